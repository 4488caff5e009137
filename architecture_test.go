package voipbot_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/voipbot/voipbot"

// forbidden lists, per package tree (a package and its subpackages, by path
// under the module), the import path prefixes it must not depend on,
// directly or not. This is the import direction of ARCHITECTURE.md: the
// media plane knows nothing of Matrix, Matrix nothing of media, the store
// neither, and only bridge knows both. The test bed runs real peers and
// knows nothing of the bridge. A leg kind (bridge/matrixcall, and the
// kinds to come) never imports the conversation layer (bridge itself):
// the contract between them is bridge/leg. The call state machine is pure.
// An entry ending in "$" forbids that one package, not its subpackages.
var forbidden = map[string][]string{
	"jami":              {"maunium.net/go/mautrix", module + "/matrix", module + "/bridge", module + "/store", module + "/web"},
	"bridge/call":       {"github.com/pion/", module + "/voip", module + "/store", module + "/matrix$", module + "/bridge$", module + "/web"},
	"bridge/leg":        {module + "/bridge$", module + "/bridge/matrixcall", module + "/matrix", module + "/store", "maunium.net/go/mautrix"},
	"bridge/matrixcall": {module + "/bridge$", module + "/web", module + "/cmd"},
	"bridge/jamicall":   {module + "/bridge$", module + "/bridge/matrixcall", module + "/matrix", "maunium.net/go/mautrix", module + "/store", module + "/web", module + "/cmd"},
	"xmpp":              {"maunium.net/go/mautrix", module + "/matrix", module + "/bridge", module + "/voip", module + "/store", module + "/web", module + "/jami"},
	"bridge/xmppcall":   {module + "/bridge$", module + "/bridge/matrixcall", module + "/bridge/jamicall", module + "/bridge/rtc", module + "/matrix", "maunium.net/go/mautrix", module + "/store", module + "/web", module + "/cmd"},
	"bridge/guestlink":  {module + "/bridge$", module + "/matrix", "maunium.net/go/mautrix", module + "/store", module + "/web", module + "/cmd"},
	"bridge/guest":      {module + "/bridge$", module + "/bridge/matrixcall", module + "/bridge/jamicall", module + "/bridge/rtc", module + "/bridge/xmppcall", module + "/matrix", "maunium.net/go/mautrix", module + "/store", module + "/web$", module + "/cmd"},
	"bridge/whip":       {module + "/bridge$", module + "/bridge/matrixcall", module + "/bridge/jamicall", module + "/bridge/rtc", module + "/bridge/xmppcall", module + "/bridge/guest", module + "/matrix", "maunium.net/go/mautrix", module + "/store", module + "/web", module + "/cmd"},
	"bridge/rtc":        {module + "/bridge$", module + "/bridge/matrixcall", module + "/bridge/jamicall", module + "/matrix$", module + "/store", module + "/web", module + "/cmd"},
	"voip":              {"maunium.net/go/mautrix", module + "/matrix", module + "/bridge", module + "/store", module + "/web"},
	"matrix":            {"github.com/pion/", module + "/voip", module + "/bridge", module + "/web"},
	"store":             {"github.com/pion/", module + "/matrix", module + "/voip", module + "/bridge", module + "/web"},
	"web":               {"github.com/pion/", "maunium.net/go/mautrix", module + "/matrix", module + "/voip", module + "/bridge", module + "/store"},
	// bridge serves its pages (web/guestpage) through handlers cmd mounts
	// on the one listener: it never depends on the listener itself.
	"bridge":            {module + "/web$", module + "/cmd"},
	"internal/testbed":  {module + "/bridge"},
	"internal/dendrite": {module + "/bridge", module + "/matrix", module + "/voip", module + "/store", module + "/web", module + "/cmd"},
}

// testOnly are the trees of the test bed (real peers for tests) and of the
// benchmark parts: production code depends on neither.
var testOnly = []string{module + "/internal/testbed", module + "/internal/bench"}

// mayUseTestOnly are the trees that may depend on testOnly: those trees
// themselves, the end-to-end tests, and the benchmark tool.
var mayUseTestOnly = []string{module + "/internal/testbed", module + "/internal/bench", module + "/e2e", module + "/cmd/voipbot-bench"}

// under reports whether pkg is tree or one of its subpackages.
func under(pkg, tree string) bool { return pkg == tree || strings.HasPrefix(pkg, tree+"/") }

func underAny(pkg string, trees []string) bool {
	for _, tree := range trees {
		if under(pkg, tree) {
			return true
		}
	}
	return false
}

// TestImportDirection checks every package's transitive dependencies
// (production code, not tests) against the rules above, that nothing but
// tests and benchmarks uses the test bed or the benchmark parts, and that
// the test bed's tests do not import the bridge either.
func TestImportDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags", "goolm", "-f",
		`{{.ImportPath}}|{{join .Deps " "}}|{{join .TestImports " "}} {{join .XTestImports " "}}`, module+"/...").CombinedOutput()
	require.NoErrorf(t, err, "go list: %s", out)
	checked := 0
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Split(line, "|")
		require.Lenf(t, fields, 3, "go list line %q", line)
		pkg, deps, testImports := fields[0], strings.Fields(fields[1]), strings.Fields(fields[2])
		rel := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
		for tree, bad := range forbidden {
			if !under(rel, tree) {
				continue
			}
			imports := deps
			if tree == "internal/testbed" {
				imports = append(append([]string(nil), deps...), testImports...)
			}
			for _, prefix := range bad {
				for _, dep := range imports {
					hit := strings.HasPrefix(dep, prefix)
					if exact, ok := strings.CutSuffix(prefix, "$"); ok {
						hit = dep == exact
					}
					require.Falsef(t, hit, "%s depends on %s (forbidden: %s)", pkg, dep, prefix)
				}
			}
		}
		if !underAny(pkg, mayUseTestOnly) {
			for _, dep := range deps {
				require.Falsef(t, underAny(dep, testOnly), "%s depends on %s: the test bed and the benchmark parts are for tests and benchmarks only", pkg, dep)
			}
		}
		checked++
	}
	require.Greater(t, checked, 8, "go list saw the packages")
}

// TestInternalHoldsProductionHelpersOnly: internal/ holds small production
// helpers and the two trees for tests and benchmarks, nothing else (a new
// test harness goes under internal/testbed, a benchmark part under
// internal/bench).
func TestInternalHoldsProductionHelpersOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags", "goolm", module+"/internal/...").CombinedOutput()
	require.NoErrorf(t, err, "go list: %s", out)
	helpers := []string{module + "/internal/dendrite", module + "/internal/opqueue", module + "/internal/pionlog"}
	for pkg := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if underAny(pkg, testOnly) {
			continue
		}
		require.Containsf(t, helpers, pkg, "%s: a test harness belongs under internal/testbed, a benchmark part under internal/bench; a new production helper is added to this list", pkg)
	}
}
