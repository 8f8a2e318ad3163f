// Package browsertest tests the UI in frontend/ in headless Chromium,
// driven with chromedp, through the real edge (nginx/frontend.conf.template
// run by Debian's nginx, over TLS) in front of the real auth and hello
// binaries. It has only tests, and is a module of its own so that chromedp
// stays out of the app's go.mod; it imports the app's internal/edge and
// internal/testbin through `replace example.com/app => ../..`.
//
// Run it from this directory:
//
//	go test ./...                                  # everything; needs nginx and chromium
//	go test -run TestAssetVersions -update         # after editing frontend/: restamp ?v=
//
// The browser tests need Chromium (`apt-get install chromium`, or CHROMIUM
// names a Chrome binary): without it they fail, saying so; outside CI
// (CI unset) SKIP_BROWSER=1 skips them instead. The tests that run nginx
// follow internal/edge/edgetest: SKIP_E2E=1 skips them outside CI. -short
// skips both. Screenshots of the rollout view and of the page go to
// $ARTIFACTS, else artifacts/ at the repository's root.
package browsertest
