package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// batchSize is a typical busy /sync response: a few rooms' worth of events.
const batchSize = 20

func benchEvents(n int) []*InboxEvent {
	events := make([]*InboxEvent, n)
	for i := range events {
		events[i] = inboxEvent(fmt.Sprintf("!room%d:x", i%4), fmt.Sprint(i))
	}
	return events
}

// BenchmarkIntakeCommit stores one sync response's events together with the
// sync position, as the sync loop does for every response.
func BenchmarkIntakeCommit(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, Config{Path: filepath.Join(b.TempDir(), "bench.db")}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	events := benchEvents(batchSize)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err = s.CommitIntake(ctx, &Intake{SyncUser: "@bot:x", NextBatch: fmt.Sprint("s", i), Events: events}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(batchSize*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkIntakeBaselineRawInsert is the floor for BenchmarkIntakeCommit:
// the same rows and position written with bare database/sql statements in
// one transaction, on the same driver and pragmas.
func BenchmarkIntakeBaselineRawInsert(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "bench.db")
	s, err := Open(ctx, Config{Path: path}, zerolog.Nop()) // same schema
	if err != nil {
		b.Fatal(err)
	}
	if err = s.Close(); err != nil {
		b.Fatal(err)
	}
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	events := benchEvents(batchSize)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range events {
			if _, err = tx.ExecContext(ctx, `INSERT INTO event_inbox (queue, event_id, source, event, sender_device, decrypted, received_at)
				VALUES (?, ?, ?, ?, '', 0, ?)`, e.Queue, e.EventID, e.Source, string(e.Event), e.ReceivedAt.UnixMilli()); err != nil {
				b.Fatal(err)
			}
		}
		if _, err = tx.ExecContext(ctx, `INSERT INTO sync_state (user_id, next_batch, updated_at) VALUES ('@bot:x', ?, ?)
			ON CONFLICT (user_id) DO UPDATE SET next_batch=excluded.next_batch, updated_at=excluded.updated_at`,
			fmt.Sprint("s", i), time.Now().UnixMilli()); err != nil {
			b.Fatal(err)
		}
		if err = tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(batchSize*b.N)/b.Elapsed().Seconds(), "events/s")
}
