// Package store keeps all of voipbot's state in one SQLite file: the bot's
// login, the sync position, events not yet handled, rooms and calls. The
// mautrix crypto and state stores live in the same file under their own
// version tables (see DB).
//
// It knows Matrix only by plain IDs and nothing of media.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver

	"github.com/voipbot/voipbot/store/upgrades"
)

// Owner is written to the database_owner table: a database created by
// another program (a bridge, a homeserver) is refused rather than altered.
const Owner = "voipbot"

// VersionTable is the schema version table of voipbot's own tables.
const VersionTable = "voipbot_version"

// Config is the database section of the configuration file.
type Config struct {
	// Path of the SQLite file. It is created if missing.
	Path string `yaml:"path"`
}

// Validate reports a configuration the store cannot open.
func (c Config) Validate() error {
	if c.Path == "" {
		return errors.New("database.path: must not be empty")
	}
	if strings.ContainsAny(c.Path, "?#") {
		return fmt.Errorf("database.path: %q contains '?' or '#', which SQLite would read as URI syntax", c.Path)
	}
	return nil
}

// Store is the opened database.
type Store struct {
	db *dbutil.Database
}

// dsn enables what the bot relies on: foreign keys, WAL so readers never wait
// for the writer, a busy timeout instead of SQLITE_BUSY errors, and
// BEGIN IMMEDIATE so write transactions never fail on lock upgrade.
func dsn(path string) string {
	return "file:" + path +
		"?_pragma=foreign_keys(1)" +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(NORMAL)" +
		"&_pragma=busy_timeout(5000)" +
		"&_txlock=immediate"
}

// Open opens (creating if needed) the database at cfg.Path and brings the
// schema up to date.
func Open(ctx context.Context, cfg Config, log zerolog.Logger) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if dir := filepath.Dir(cfg.Path); dir != "." {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating database directory %s: %w", dir, err)
		}
	}
	// The file holds the access token and the (pickled) encryption keys:
	// create it private. SQLite gives its -wal and -shm files the same mode.
	f, err := os.OpenFile(cfg.Path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening database %s: %w", cfg.Path, err)
	}
	if err = f.Close(); err != nil {
		return nil, fmt.Errorf("opening database %s: %w", cfg.Path, err)
	}
	raw, err := sql.Open("sqlite", dsn(cfg.Path))
	if err != nil {
		return nil, fmt.Errorf("opening database %s: %w", cfg.Path, err)
	}
	db, err := dbutil.NewWithDB(raw, "sqlite")
	if err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("wrapping database %s: %w", cfg.Path, err)
	}
	db.Owner = Owner
	db.VersionTable = VersionTable
	db.UpgradeTable = upgrades.Table
	db.IgnoreForeignTables = false
	db.Log = dbutil.ZeroLogger(log.With().Str("db_section", "voipbot").Logger())
	if err = db.Upgrade(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("upgrading database %s: %w", cfg.Path, err)
	}
	return &Store{db: db}, nil
}

// DB is the underlying database, for the mautrix crypto and state stores,
// which create their own tables under their own version tables.
func (s *Store) DB() *dbutil.Database { return s.db }

// Close closes the database. Writes already returned are durable.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing database: %w", err)
	}
	return nil
}
