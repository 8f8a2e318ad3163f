// Command gen writes the rule resources of kubernetes/components from
// monitoring/rules.yaml. Run it from monitoring/check: go generate.
package main

import (
	"fmt"
	"os"

	"example.com/app/monitoring/check"
)

func main() {
	if err := check.Generate(); err != nil {
		fmt.Fprintf(os.Stderr, "gen: %v\n", err)
		os.Exit(1)
	}
}
