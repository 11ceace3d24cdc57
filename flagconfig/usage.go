package flagconfig

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Topic is a heading of the help text and the flags it gathers.
type Topic struct {
	// Title is the heading ("Network").
	Title string
	// Match lists flag names ("join") and name prefixes ending in '-'
	// ("tls-"). A flag belongs to the topic with the longest match; a
	// flag that no topic matches is listed under "Other".
	Match []string
}

// OtherTitle heads the flags that no topic matches.
const OtherTitle = "Other"

// topicOf returns the index of the topic whose match for name is longest,
// or -1.
func topicOf(topics []Topic, name string) int {
	best, bestLen := -1, 0
	for i, t := range topics {
		for _, m := range t.Match {
			ok := m == name || (strings.HasSuffix(m, "-") && strings.HasPrefix(name, m))
			if ok && len(m) > bestLen {
				best, bestLen = i, len(m)
			}
		}
	}
	return best
}

// Usage writes fs's flags to w grouped by topic, in the topics' order,
// each flag with its type, usage text, default and environment variable.
func Usage(w io.Writer, fs *flag.FlagSet, topics []Topic, o Options) {
	groups := make([][]*flag.Flag, len(topics)+1)
	fs.VisitAll(func(f *flag.Flag) {
		i := topicOf(topics, f.Name)
		if i < 0 {
			i = len(topics)
		}
		groups[i] = append(groups[i], f)
	})
	for i, g := range groups {
		if len(g) == 0 {
			continue
		}
		title := OtherTitle
		if i < len(topics) {
			title = topics[i].Title
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, f := range g {
			typ, usage := flag.UnquoteUsage(f)
			name := "--" + f.Name
			if typ != "" {
				name += " " + typ
			}
			var extra []string
			if d := f.DefValue; d != "" && d != "0" && d != "false" && d != "0s" {
				extra = append(extra, "default "+d)
			}
			if env := EnvName(o.EnvPrefix, f.Name); o.EnvPrefix != "" && !strings.Contains(usage, env) {
				extra = append(extra, "env "+env)
			}
			if len(extra) > 0 {
				usage += " [" + strings.Join(extra, ", ") + "]"
			}
			fmt.Fprintf(tw, "  %s\t%s\n", name, usage)
		}
		tw.Flush()
	}
}

// SetUsage makes fs print a one-line synopsis, then its flags grouped by
// topic (Usage), then how the config file and the environment work.
func SetUsage(fs *flag.FlagSet, synopsis string, topics []Topic, o Options) {
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: %s\n", synopsis)
		Usage(w, fs, topics, o)
		if o.ConfigFlag != "" && fs.Lookup(o.ConfigFlag) != nil {
			fmt.Fprintf(w, "\nEvery flag can also be set in the --%s file (TOML, one key per flag: data-dir = \"/var/lib/agora\")", o.ConfigFlag)
			if o.EnvPrefix != "" {
				fmt.Fprintf(w, "\nor in the environment (%s<FLAG>, upper case, '-' as '_')", o.EnvPrefix)
			}
			fmt.Fprintf(w, ".\nPrecedence: command line, then environment, then file, then default.\n")
		}
	}
}
