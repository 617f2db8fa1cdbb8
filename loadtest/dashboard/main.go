// Command dashboard proves the Grafana dashboard shows data: it reads every
// panel query from deploy/grafana/dashboards/orderflow.json, runs it as a
// range query against a Prometheus HTTP API (the native one `make observe`
// starts), and writes an HTML page with one chart per panel. It exits 1,
// after writing the page, when a panel has no data.
//
//	go run ./loadtest/dashboard -prometheus http://127.0.0.1:9090 -range 15m -out docs/dashboard.html
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"html/template"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		os.Exit(1)
	}
}

type dashboard struct {
	Title  string `json:"title"`
	Panels []struct {
		Title       string `json:"title"`
		Description string `json:"description"`
		FieldConfig struct {
			Defaults struct {
				Unit string `json:"unit"`
			} `json:"defaults"`
		} `json:"fieldConfig"`
		Targets []struct {
			Expr         string `json:"expr"`
			LegendFormat string `json:"legendFormat"`
		} `json:"targets"`
	} `json:"panels"`
}

// series is one line of a chart.
type series struct {
	Name   string
	Color  string
	Points string // SVG polyline points
	Last   string
}

type chart struct {
	Title, Description, Unit string
	Queries                  []string
	Series                   []series
	Min, Max                 string
	HasData                  bool
	Error                    string
}

var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

const width, height = 560.0, 200.0

func run() error {
	file := flag.String("dashboard", "deploy/grafana/dashboards/orderflow.json", "Grafana dashboard JSON")
	prom := flag.String("prometheus", envOr("PROMETHEUS_URL", "http://127.0.0.1:9090"), "Prometheus base URL")
	span := flag.Duration("range", 15*time.Minute, "time range to show, ending now")
	step := flag.Duration("step", 15*time.Second, "query resolution")
	out := flag.String("out", "docs/dashboard.html", "HTML page to write")
	flag.Parse()

	b, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}
	end := time.Now()
	start := end.Add(-*span)
	var charts []chart
	var empty []string
	for _, p := range d.Panels {
		c := chart{Title: p.Title, Description: p.Description, Unit: p.FieldConfig.Defaults.Unit}
		type line struct {
			name string
			ts   []float64
			vs   []float64
		}
		var lines []line
		for _, t := range p.Targets {
			c.Queries = append(c.Queries, t.Expr)
			res, err := queryRange(*prom, t.Expr, start, end, *step)
			if err != nil {
				c.Error = err.Error()
				continue
			}
			for _, r := range res {
				l := line{name: legend(t.LegendFormat, r.Metric)}
				for _, v := range r.Values {
					f, err := strconv.ParseFloat(v[1].(string), 64)
					if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
						continue
					}
					l.ts = append(l.ts, v[0].(float64))
					l.vs = append(l.vs, f)
				}
				if len(l.vs) > 0 {
					lines = append(lines, l)
				}
			}
		}
		sort.Slice(lines, func(i, j int) bool { return lines[i].name < lines[j].name })
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, l := range lines {
			for _, v := range l.vs {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
		if len(lines) > 0 {
			c.HasData = true
			lo = math.Min(lo, 0)
			if hi <= lo {
				hi = lo + 1
			}
			c.Min, c.Max = format(lo, c.Unit), format(hi, c.Unit)
			t0, t1 := float64(start.Unix()), float64(end.Unix())
			for i, l := range lines {
				var pts []string
				for k := range l.vs {
					x := (l.ts[k] - t0) / (t1 - t0) * width
					y := height - (l.vs[k]-lo)/(hi-lo)*height
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
				}
				c.Series = append(c.Series, series{Name: l.name, Color: palette[i%len(palette)],
					Points: strings.Join(pts, " "), Last: format(l.vs[len(l.vs)-1], c.Unit)})
			}
		} else {
			empty = append(empty, p.Title)
		}
		charts = append(charts, c)
	}

	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	err = page.Execute(f, map[string]any{
		"Title": d.Title, "Prometheus": *prom, "Start": start.UTC().Format(time.RFC3339),
		"End": end.UTC().Format(time.RFC3339), "Charts": charts, "Empty": empty,
		"Width": width, "Height": height,
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	fmt.Printf("%s: %d panels, %d with data → %s\n", d.Title, len(charts), len(charts)-len(empty), *out)
	if len(empty) > 0 {
		return fmt.Errorf("panels without data: %s", strings.Join(empty, "; "))
	}
	return nil
}

type result struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"`
}

func queryRange(base, expr string, start, end time.Time, step time.Duration) ([]result, error) {
	q := url.Values{"query": {expr}, "start": {strconv.FormatInt(start.Unix(), 10)},
		"end": {strconv.FormatInt(end.Unix(), 10)}, "step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/api/v1/query_range?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", base, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []result `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return nil, fmt.Errorf("query %q: %s", expr, b)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", expr, body.Error)
	}
	return body.Data.Result, nil
}

var legendRE = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)

func legend(format string, labels map[string]string) string {
	if format == "" {
		return fmt.Sprint(labels)
	}
	return legendRE.ReplaceAllStringFunc(format, func(m string) string {
		return labels[legendRE.FindStringSubmatch(m)[1]]
	})
}

func format(v float64, unit string) string {
	switch unit {
	case "s":
		switch {
		case v == 0:
			return "0"
		case math.Abs(v) < 1:
			return strconv.FormatFloat(v*1000, 'f', 1, 64) + " ms"
		}
		return strconv.FormatFloat(v, 'f', 2, 64) + " s"
	case "percentunit":
		return strconv.FormatFloat(v*100, 'f', 1, 64) + "%"
	case "reqps", "ops":
		return strconv.FormatFloat(v, 'f', 2, 64) + "/s"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Title}} dashboard, rendered</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;background:#fafafa;color:#222}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(600px,1fr));gap:16px}
.panel{background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px}
.panel.empty{border-color:#d62728}
h2{font-size:15px;margin:0 0 4px} p.d{font-size:12px;color:#666;margin:0 0 8px}
code{font-size:11px;color:#555;display:block;white-space:pre-wrap;word-break:break-all}
ul.l{list-style:none;padding:0;margin:6px 0;font-size:12px} ul.l li{display:inline-block;margin-right:12px}
.sw{display:inline-block;width:10px;height:10px;margin-right:4px}
svg{background:#fcfcfc;border:1px solid #eee}
</style></head><body>
<h1>{{.Title}}</h1>
<p>Every panel query of <code style="display:inline">deploy/grafana/dashboards/orderflow.json</code>, run against {{.Prometheus}} from {{.Start}} to {{.End}}.
{{if .Empty}}<strong style="color:#d62728">Panels without data: {{range .Empty}}{{.}}; {{end}}</strong>{{else}}<strong>Every panel has data.</strong>{{end}}</p>
<div class="grid">
{{range .Charts}}<div class="panel{{if not .HasData}} empty{{end}}">
<h2>{{.Title}}</h2><p class="d">{{.Description}}</p>
{{if .HasData}}<svg width="{{$.Width}}" height="{{$.Height}}" viewBox="0 0 {{$.Width}} {{$.Height}}">
{{range .Series}}<polyline fill="none" stroke="{{.Color}}" stroke-width="1.5" points="{{.Points}}"/>{{end}}
</svg><div style="font-size:11px;color:#888">y: {{.Min}} … {{.Max}}</div>
<ul class="l">{{range .Series}}<li><span class="sw" style="background:{{.Color}}"></span>{{.Name}}: {{.Last}}</li>{{end}}</ul>
{{else}}<p style="color:#d62728">no data{{if .Error}}: {{.Error}}{{end}}</p>{{end}}
{{range .Queries}}<code>{{.}}</code>{{end}}
</div>
{{end}}</div></body></html>
`))
