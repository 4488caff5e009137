package jami

// NewMemStore is a Store in memory, for the package's external tests.
func NewMemStore() Store { return &memStore{} }
