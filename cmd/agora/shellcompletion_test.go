package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// complete sources the generated bash script and asks _agora for the
// completions of line (the last word is the one being completed).
func complete(t *testing.T, script string, line ...string) []string {
	t.Helper()
	words := make([]string, len(line))
	for i, w := range line {
		words[i] = "'" + w + "'"
	}
	// Sourced from inside a function, as bash-completion loads it lazily.
	prog := "load() { source " + script + "; }\nload\nCOMP_WORDS=(" + strings.Join(words, " ") + ")\nCOMP_CWORD=" +
		strconv.Itoa(len(line)-1) + "\n_agora\necho \"${COMPREPLY[*]}\"\n"
	out, err := exec.Command("bash", "-c", prog).CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v: %s", err, out)
	}
	return strings.Fields(string(out))
}

func has(list []string, want ...string) bool {
	set := map[string]bool{}
	for _, s := range list {
		set[s] = true
	}
	for _, w := range want {
		if !set[w] {
			return false
		}
	}
	return true
}

func TestCompletionBash(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("!!! bash completion test SKIPPED: no bash here")
	}
	out, errOut, code := agora(t, "completion", "bash")
	if code != 0 {
		t.Fatalf("completion bash: exit %d: %s", code, errOut)
	}
	script := filepath.Join(t.TempDir(), "agora.bash")
	if err := os.WriteFile(script, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	// Every command of the table is offered at the top.
	top := complete(t, script, "agora", "")
	for name := range commands {
		if !has(top, name) {
			t.Errorf("top-level completion lacks %q: %v", name, top)
		}
	}
	for _, tc := range []struct {
		line []string
		want []string
	}{
		{[]string{"agora", "ro"}, []string{"role", "roles"}},
		{[]string{"agora", "role", ""}, []string{"set", "rm"}},
		{[]string{"agora", "role", "set", "web", "--w"}, []string{"--weight"}},
		{[]string{"agora", "service", "s"}, []string{"scale", "status"}},
		{[]string{"agora", "master", "--data"}, []string{"--data-dir"}},
		{[]string{"agora", "master", "--con"}, []string{"--config"}},
		{[]string{"agora", "agents", "--addr", "x", "--j"}, []string{"--json"}},
		{[]string{"agora", "completion", ""}, []string{"bash", "zsh"}},
	} {
		if got := complete(t, script, tc.line...); !has(got, tc.want...) {
			t.Errorf("complete %q = %v, want %v among them", tc.line, got, tc.want)
		}
	}
	if got := complete(t, script, "agora", "explain", ""); len(got) != 0 {
		t.Errorf("explain takes a framework id, not a subcommand; completion offered %v", got)
	}

	zsh, errOut, code := agora(t, "completion", "zsh")
	if code != 0 || !strings.HasPrefix(zsh, "#compdef agora") || !strings.Contains(zsh, `"agora role set"`) {
		t.Errorf("completion zsh: exit %d, %s; script starts %.80q", code, errOut, zsh)
	}
	if zshBin, err := exec.LookPath("zsh"); err == nil {
		p := filepath.Join(t.TempDir(), "_agora")
		_ = os.WriteFile(p, []byte(zsh), 0o644)
		if out, err := exec.Command(zshBin, "-n", p).CombinedOutput(); err != nil {
			t.Errorf("zsh -n: %v: %s", err, out)
		}
	} else {
		t.Log("zsh not installed: the zsh script is checked for content only, not parsed")
	}
	if _, _, code := agora(t, "completion", "fish"); code != 2 {
		t.Errorf("completion fish: exit %d, want 2 (usage)", code)
	}
}
