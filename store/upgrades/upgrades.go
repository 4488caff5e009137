// Package upgrades holds voipbot's numbered schema migrations.
//
// 00-latest.sql creates a fresh database at the newest version in one step;
// existing databases run the numbered files in order. The store tests check
// that both paths end in the same schema.
package upgrades

import (
	"embed"

	"go.mau.fi/util/dbutil"
)

//go:embed *.sql
var rawUpgrades embed.FS

// Table is the upgrade table for the voipbot_version version table.
var Table = dbutil.BuildUpgradeTable().WithFS(rawUpgrades).Finish()
