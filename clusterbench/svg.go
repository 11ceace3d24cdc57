package clusterbench

import (
	"bytes"
	"fmt"
	"html"
	"math"
)

// Series is one line of a line chart.
type Series struct {
	Name string
	X, Y []float64
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"}

const (
	svgW, svgH             = 720, 420
	padL, padR, padT, padB = 70, 170, 40, 50
)

// niceMax rounds v up to 1, 2 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func svgHeader(b *bytes.Buffer, title string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", svgW, svgH, svgW, svgH)
	fmt.Fprintf(b, `<rect width="%d" height="%d" fill="white"/>`+"\n", svgW, svgH)
	fmt.Fprintf(b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", padL, html.EscapeString(title))
}

// axes draws the plot frame with 5 ticks per axis, labelled by fx and fy.
func axes(b *bytes.Buffer, xmax, ymax float64, xlabel, ylabel string) {
	w, h := float64(svgW-padL-padR), float64(svgH-padT-padB)
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#333"/>`+"\n", padL, padT, w, h)
	for i := 0; i <= 5; i++ {
		x := float64(padL) + w*float64(i)/5
		y := float64(padT) + h - h*float64(i)/5
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.0f" stroke="#ddd"/>`+"\n", x, padT, x, float64(padT)+h)
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#ddd"/>`+"\n", padL, y, float64(padL)+w, y)
		fmt.Fprintf(b, `<text x="%.1f" y="%.0f" text-anchor="middle">%g</text>`+"\n", x, float64(padT)+h+16, xmax*float64(i)/5)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n", padL-6, y+4, ymax*float64(i)/5)
	}
	fmt.Fprintf(b, `<text x="%.0f" y="%d" text-anchor="middle">%s</text>`+"\n", float64(padL)+w/2, svgH-12, html.EscapeString(xlabel))
	fmt.Fprintf(b, `<text x="16" y="%.0f" text-anchor="middle" transform="rotate(-90 16 %.0f)">%s</text>`+"\n",
		float64(padT)+h/2, float64(padT)+h/2, html.EscapeString(ylabel))
}

// LineChart draws series as polylines with point markers and a legend.
func LineChart(title, xlabel, ylabel string, series []Series) []byte {
	var b bytes.Buffer
	svgHeader(&b, title)
	xmax, ymax := 0.0, 0.0
	for _, s := range series {
		for i := range s.X {
			xmax, ymax = max(xmax, s.X[i]), max(ymax, s.Y[i])
		}
	}
	xmax, ymax = niceMax(xmax), niceMax(ymax)
	axes(&b, xmax, ymax, xlabel, ylabel)
	w, h := float64(svgW-padL-padR), float64(svgH-padT-padB)
	for si, s := range series {
		c := palette[si%len(palette)]
		var pts bytes.Buffer
		for i := range s.X {
			x, y := float64(padL)+w*s.X[i]/xmax, float64(padT)+h-h*s.Y[i]/ymax
			fmt.Fprintf(&pts, "%.1f,%.1f ", x, y)
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x, y, c)
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", bytes.TrimSpace(pts.Bytes()), c)
		ly := padT + 10 + 20*si
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>`+"\n", svgW-padR+12, ly, svgW-padR+32, ly, c)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", svgW-padR+38, ly+4, html.EscapeString(s.Name))
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// Timeline draws one row per round: a mark for each named event at its
// time after the kill (ms), events in the order given.
func Timeline(title string, events []string, rounds [][]float64) []byte {
	var b bytes.Buffer
	svgHeader(&b, title)
	xmax := 0.0
	for _, r := range rounds {
		for _, v := range r {
			xmax = max(xmax, v)
		}
	}
	xmax = niceMax(xmax)
	w, h := float64(svgW-padL-padR), float64(svgH-padT-padB)
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#333"/>`+"\n", padL, padT, w, h)
	for i := 0; i <= 5; i++ {
		x := float64(padL) + w*float64(i)/5
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.0f" stroke="#ddd"/>`+"\n", x, padT, x, float64(padT)+h)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%g</text>`+"\n", x, float64(padT)+h+16, xmax*float64(i)/5)
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">ms after SIGKILL of the leader</text>`+"\n", float64(padL)+w/2, svgH-12)
	rowH := h / float64(max(len(rounds), 1))
	for ri, r := range rounds {
		y := float64(padT) + rowH*(float64(ri)+0.5)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">round %d</text>`+"\n", padL-6, y+4, ri+1)
		last := 0.0
		for _, v := range r {
			last = max(last, v)
		}
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#bbb" stroke-width="2"/>`+"\n", padL, y, float64(padL)+w*last/xmax, y)
		for ei, v := range r {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="5" fill="%s"><title>%s %.0f ms</title></circle>`+"\n",
				float64(padL)+w*v/xmax, y, palette[ei%len(palette)], html.EscapeString(events[ei]), v)
		}
	}
	for ei, e := range events {
		ly := padT + 10 + 20*ei
		fmt.Fprintf(&b, `<circle cx="%d" cy="%d" r="5" fill="%s"/>`+"\n", svgW-padR+20, ly, palette[ei%len(palette)])
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", svgW-padR+30, ly+4, html.EscapeString(e))
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}
