package voipbot_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/voipbot/voipbot"

// forbidden lists, per package (and its subpackages), the import path
// prefixes it must not depend on, directly or not. This is the import
// direction of ARCHITECTURE.md: the media plane knows nothing of Matrix,
// Matrix nothing of media, the store neither, and only bridge knows both.
var forbidden = map[string][]string{
	"voip":   {"maunium.net/go/mautrix", module + "/matrix", module + "/bridge", module + "/store", module + "/web"},
	"matrix": {"github.com/pion/", module + "/voip", module + "/bridge", module + "/web"},
	"store":  {"github.com/pion/", module + "/matrix", module + "/voip", module + "/bridge", module + "/web"},
	"web":    {"github.com/pion/", "maunium.net/go/mautrix", module + "/matrix", module + "/voip", module + "/bridge", module + "/store"},
	"bridge": {module + "/web", module + "/cmd"},
}

// TestImportDirection checks every package's transitive dependencies
// (production code, not tests) against the rules above, and that nothing
// but tests uses the test bed.
func TestImportDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags", "goolm", "-f", `{{.ImportPath}} {{join .Deps " "}}`, module+"/...").CombinedOutput()
	require.NoErrorf(t, err, "go list: %s", out)
	checked := 0
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		pkg, depList, _ := strings.Cut(line, " ")
		deps := strings.Fields(depList)
		rel := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
		top, _, _ := strings.Cut(rel, "/")
		for _, bad := range forbidden[top] {
			for _, dep := range deps {
				require.Falsef(t, strings.HasPrefix(dep, bad), "%s depends on %s (forbidden: %s)", pkg, dep, bad)
			}
		}
		if top != "internal" && top != "e2e" {
			require.NotContainsf(t, deps, module+"/internal/testbed", "%s uses the test bed outside tests", pkg)
		}
		checked++
	}
	require.Greater(t, checked, 8, "go list saw the packages")
}
