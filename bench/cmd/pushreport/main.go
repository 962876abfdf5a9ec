// Command pushreport renders one self-contained HTML page from several
// pushbench --json files (one section per file, in the order given), as
// pushbench --report does for a single run. make bench uses it for the
// suite's report. See bench/README.md.
//
//	pushreport -o report.html [-title T] a.json b.json ...
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/pushring/pushring/bench"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pushreport:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("pushreport", flag.ContinueOnError)
	out := fs.String("o", "report.html", "HTML file to write")
	title := fs.String("title", "pushbench", "page title")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("usage: pushreport -o report.html a.json b.json ...")
	}
	var reps []*bench.Report
	for _, p := range fs.Args() {
		r, err := bench.ReadReport(p)
		if err != nil {
			return err
		}
		reps = append(reps, r)
	}
	return bench.WriteHTMLFile(*out, *title, reps...)
}
