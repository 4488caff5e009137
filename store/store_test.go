package store

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.mau.fi/util/dbutil"

	"github.com/voipbot/voipbot/store/upgrades"
)

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), Config{Path: filepath.Join(t.TempDir(), "voipbot.db")}, zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

var spaces = regexp.MustCompile(`\s+`)

// schema lists every table and index with its normalised SQL.
func schema(t *testing.T, db *dbutil.Database) map[string]string {
	t.Helper()
	rows, err := db.Query(context.Background(),
		"SELECT type || ' ' || name, COALESCE(sql, '') FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, sql string
		require.NoError(t, rows.Scan(&name, &sql))
		out[name] = strings.TrimSpace(spaces.ReplaceAllString(sql, " "))
	}
	require.NoError(t, rows.Err())
	return out
}

func version(t *testing.T, s *Store) int {
	t.Helper()
	var v int
	require.NoError(t, s.db.QueryRow(context.Background(), "SELECT version FROM "+VersionTable).Scan(&v))
	return v
}

func TestFreshDatabaseIsAtLatestVersion(t *testing.T) {
	s := openTest(t)
	require.Equal(t, len(upgrades.Table), version(t, s))
	tables := schema(t, s.db)
	for _, want := range []string{"table account", "table sync_state", "table event_inbox",
		"table appservice_txn", "table room", "table call", "table database_owner", "index call_active_idx"} {
		require.Contains(t, tables, want)
	}
	var owner string
	require.NoError(t, s.db.QueryRow(context.Background(), "SELECT owner FROM database_owner").Scan(&owner))
	require.Equal(t, Owner, owner)
}

// TestUpgradePathMatchesFreshSchema builds a database at v1 from the v1
// schema, opens it, and checks that the upgrades end in exactly the schema a
// fresh database gets from 00-latest.sql.
func TestUpgradePathMatchesFreshSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	v1, err := os.ReadFile("testdata/schema-v1.sql")
	require.NoError(t, err)
	raw, err := dbutil.NewWithDialect(dsn(path), "sqlite")
	require.NoError(t, err)
	_, err = raw.Exec(ctx, string(v1))
	require.NoError(t, err)
	_, err = raw.Exec(ctx, "CREATE TABLE "+VersionTable+" (version INTEGER, compat INTEGER); INSERT INTO "+VersionTable+" VALUES (1, 1)")
	require.NoError(t, err)
	_, err = raw.Exec(ctx, "INSERT INTO room (room_id, membership, updated_at) VALUES ('!kept:example.com', 'join', 1)")
	require.NoError(t, err)
	require.NoError(t, raw.Close())

	upgraded, err := Open(ctx, Config{Path: path}, zerolog.Nop())
	require.NoError(t, err)
	defer upgraded.Close()
	fresh := openTest(t)

	require.Equal(t, len(upgrades.Table), version(t, upgraded))
	require.Equal(t, schema(t, fresh.db), schema(t, upgraded.db))
	room, err := upgraded.Room(ctx, "!kept:example.com")
	require.NoError(t, err)
	require.NotNil(t, room, "rows written at v1 survive the upgrade")
}

func TestOpenRefusesDatabaseOfAnotherOwner(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "other.db")
	raw, err := dbutil.NewWithDialect(dsn(path), "sqlite")
	require.NoError(t, err)
	_, err = raw.Exec(ctx, "CREATE TABLE database_owner (key INTEGER PRIMARY KEY DEFAULT 0, owner TEXT NOT NULL); INSERT INTO database_owner VALUES (0, 'mautrix-whatsapp')")
	require.NoError(t, err)
	require.NoError(t, raw.Close())

	_, err = Open(ctx, Config{Path: path}, zerolog.Nop())
	require.ErrorIs(t, err, dbutil.ErrNotOwned)
	require.ErrorContains(t, err, "mautrix-whatsapp")
}

func TestOpenRefusesHomeserverDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dendrite.db")
	raw, err := dbutil.NewWithDialect(dsn(path), "sqlite")
	require.NoError(t, err)
	_, err = raw.Exec(ctx, "CREATE TABLE roomserver_rooms (room_nid INTEGER)")
	require.NoError(t, err)
	require.NoError(t, raw.Close())

	_, err = Open(ctx, Config{Path: path}, zerolog.Nop())
	require.ErrorIs(t, err, dbutil.ErrForeignTables)
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "newer.db")
	s, err := Open(ctx, Config{Path: path}, zerolog.Nop())
	require.NoError(t, err)
	_, err = s.db.Exec(ctx, "UPDATE "+VersionTable+" SET version=99, compat=99")
	require.NoError(t, err)
	require.NoError(t, s.Close())

	_, err = Open(ctx, Config{Path: path}, zerolog.Nop())
	require.ErrorIs(t, err, dbutil.ErrUnsupportedDatabaseVersion)
}

func TestConfigValidate(t *testing.T) {
	require.ErrorContains(t, Config{}.Validate(), "database.path")
	require.ErrorContains(t, Config{Path: "a?b.db"}.Validate(), "database.path")
	require.NoError(t, Config{Path: "data/voipbot.db"}.Validate())
}

func TestOpenCreatesPrivateFileAndDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nested", "dir", "voipbot.db")
	s, err := Open(context.Background(), Config{Path: path}, zerolog.Nop())
	require.NoError(t, err)
	require.NoError(t, s.PutAccount(context.Background(), &Account{UserID: "@bot:x", DeviceID: "D", AccessToken: "t", Homeserver: "h"}))
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		info, err := os.Stat(f)
		require.NoError(t, err)
		require.Equalf(t, os.FileMode(0o600), info.Mode().Perm(), "%s holds secrets", f)
	}
	require.NoError(t, s.Close())
}
