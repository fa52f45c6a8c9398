package bench

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestSoakJudge: each way a soak can fail is stated, and a clean soak
// passes; the Markdown report carries the figures and the verdict.
func TestSoakJudge(t *testing.T) {
	clean := func() *SoakReport {
		return &SoakReport{
			Figures: []Trend{{Name: "rss", Unit: "MB", Start: 30, Peak: 80, End: 70, Rise: 2, Limit: 32}},
			Load:    SoakLoad{Matched: 1000, PluginKills: 3, PluginRestarts: 3},
		}
	}
	cases := []struct {
		name  string
		edit  func(r *SoakReport)
		fails string
	}{
		{"clean", func(*SoakReport) {}, ""},
		{"grows", func(r *SoakReport) { r.Figures[0].Grows = true }, "rss grows without bound"},
		{"corrupt", func(r *SoakReport) { r.Load.Corrupt = 1 }, "corrupt"},
		{"unknown", func(r *SoakReport) { r.Load.Unknown = 2 }, "corrupt or never-published"},
		{"no data", func(r *SoakReport) { r.Load.Matched = 0 }, "no viewer got"},
		{"plugin not back", func(r *SoakReport) { r.Load.PluginRestarts = 2 }, "restarted 2"},
		{"errors", func(r *SoakReport) { r.Errors = []string{"relay: boom"} }, "1 errors"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := clean()
			c.edit(r)
			r.judge(false)
			got := strings.Join(r.Failed, "; ")
			if c.fails == "" && got != "" || c.fails != "" && !strings.Contains(got, c.fails) {
				t.Errorf("failed %q, want %q", got, c.fails)
			}
			var b strings.Builder
			r.writeMarkdown(&b)
			want := "verdict: PASS"
			if c.fails != "" {
				want = "verdict: FAIL"
			}
			if !strings.Contains(b.String(), want) || !strings.Contains(b.String(), "| rss (MB) | 30 | 80 | 70 |") {
				t.Errorf("report lacks %q or the rss row:\n%s", want, b.String())
			}
		})
	}
}

// TestSoakRun runs a short soak (no plugin): streams come and go, viewers
// come and go, junk reaches every listener, and it passes.
func TestSoakRun(t *testing.T) {
	if testing.Short() {
		t.Skip("12 s soak")
	}
	rep, err := RunSoak(t.Context(), Config{Streams: 2, Viewers: 1, Synthetic: true, Loss: soakLoss, Soak: 12 * time.Second}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Failed) > 0 {
		var b strings.Builder
		rep.writeMarkdown(&b)
		t.Fatalf("soak failed: %v\n%s", rep.Failed, b.String())
	}
	if rep.Load.Publishes <= 2 || rep.Load.ViewerSessions < 2 {
		t.Errorf("%d publisher sessions, %d viewer sessions: no churn", rep.Load.Publishes, rep.Load.ViewerSessions)
	}
	for k, n := range rep.Load.Junk {
		if n == 0 {
			t.Errorf("no junk reached %s", k)
		}
	}
	if len(rep.Figures) != len(soakFigures) || rep.Samples < 10 {
		t.Errorf("%d figures, %d samples", len(rep.Figures), rep.Samples)
	}
}
