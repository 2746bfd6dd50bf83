package drill

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/sys/unix"

	"github.com/killswitch-dev/killswitch/internal/hub"
	"github.com/killswitch-dev/killswitch/internal/testenv"
)

// TestConsoleEndToEnd drives the hub's console in headless Chromium: an
// operator signs in, sees the incident a real guard raised, queues a
// restore, and sees it done; the drill then checks every file. Screenshots
// of each page go to $KILLSWITCH_SCREENSHOTS when it is set.
// wannacrySHA256 is the published SHA-256 of WannaCry's encryptor
// (tasksche.exe); no file here has it.
const wannacrySHA256 = "ed01ebfbc9eb5bbea545af4d01bf5f1071661840480439c6e5babe8e080e41aa"

func TestConsoleEndToEnd(t *testing.T) {
	testenv.RequireRoot(t)
	chromium := testenv.RequireTool(t, "chromium")
	exe := testenv.BuildKillswitch(t)
	ctx := context.Background()
	dir := t.TempDir()
	h, err := hub.Open(ctx, hub.Config{Listen: "127.0.0.1:0", DataDir: dir, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Start()()
	const user, password = "rita", "responder password 1"
	if err := h.AddUser(ctx, user, password, hub.RoleResponder); err != nil {
		t.Fatal(err)
	}
	tok, err := h.NewToken(ctx, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.IgnoreCertErrors,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.UserDataDir(filepath.Join(dir, "chromium")),
		chromedp.WindowSize(1280, 900))...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	shots := os.Getenv("KILLSWITCH_SCREENSHOTS")
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			if shots == "" {
				return nil
			}
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644)
		})
	}
	// The first action starts the browser: no time-out on it.
	if err := chromedp.Do(browser, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		c, cancel := context.WithTimeout(browser, 60*time.Second)
		defer cancel()
		if err := chromedp.Do(c, actions...); err != nil {
			chromedp.Do(browser, shot("failed"))
			t.Fatalf("%s: %v", what, err)
		}
	}
	// goTo follows an in-page link: a hash change loads no new document,
	// so it is not a navigation to wait for.
	goTo := func(view string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[any](`location.hash = "#/`+view+`"`)(ctx, tg)
			return err
		})
	}
	run("sign in",
		chromedp.Navigate(h.URL()+"/"),
		chromedp.WaitVisible("#login"),
		chromedp.SendKeys("#user", user),
		chromedp.SendKeys("#password", password),
		shot("01-sign-in"),
		chromedp.Click("#signin"),
		chromedp.WaitVisible("#nav"),
	)

	// The drill's folder (and so what its blocker watches) is a tmpfs of
	// this test's own: a test never marks a filesystem the machine runs from.
	work := filepath.Join(dir, "work")
	os.Mkdir(work, 0o755)
	if err := unix.Mount("tmpfs", work, "tmpfs", 0, "size=512m"); err != nil {
		t.Fatalf("tmpfs: %v", err)
	}
	defer unix.Unmount(work, unix.MNT_DETACH)
	t.Setenv("TMPDIR", work)

	var restoredInBrowser string
	res, err := Run(ctx, Options{Profile: "wannacry", Files: 60, Exe: exe, Log: slog.New(slog.DiscardHandler),
		Hub: &HubLink{URL: h.URL(), Token: tok, StateDir: filepath.Join(dir, "agent"),
			RestoreVia: func(ctx context.Context, hostID, incident string) error {
				row := `tr[data-incident="` + incident + `"] a`
				run("see the incident and queue a restore",
					goTo("hosts"),
					chromedp.WaitVisible(`tr[data-host="drill-wannacry"]`),
					shot("02-hosts"),
					goTo("incidents"),
					chromedp.WaitVisible(row),
					shot("03-incidents"),
					chromedp.Click(row),
					chromedp.WaitVisible("#restore"),
					shot("04-incident"),
					chromedp.Click("#restore"),
					chromedp.WaitVisible("#restore-state"),
				)
				// The page refreshes every 3 s; wait for the agent to report.
				run("see the restore done",
					chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
						_, err := chromedp.Poll[bool](`document.querySelector("#restore-state") && document.querySelector("#restore-state").textContent.includes("done")`,
							chromedp.WithPollingTimeout(45*time.Second))(ctx, tg)
						if err == nil {
							restoredInBrowser, err = chromedp.Text("#restore-state")(ctx, tg)
						}
						return err
					}),
					shot("05-restored"),
					goTo("outbreak"), chromedp.WaitVisible("svg.outbreak"), shot("06-outbreak"),
					goTo("actions"), chromedp.WaitVisible("table"), shot("07-actions"),
					goTo("audit"), chromedp.WaitVisible("table"), shot("08-audit"),
				)
				// Block WannaCry's tasksche.exe fleet-wide; the drill's
				// agent applies it (its blocker watches only the corpus).
				run("block a binary on every host",
					goTo("blocklist"), chromedp.WaitVisible("#block-form"),
					chromedp.SendKeys("#block-sha", wannacrySHA256),
					chromedp.SendKeys("#block-note", "WannaCry tasksche.exe"),
					chromedp.Click(`#block-form button[type="submit"]`),
					chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
						_, err := chromedp.Poll[bool](`(document.querySelector('tr[data-sha="`+wannacrySHA256+`"]') || {textContent: ""}).textContent.includes("1 done")`,
							chromedp.WithPollingTimeout(45*time.Second))(ctx, tg)
						return err
					}),
					shot("09-blocklist"),
				)
				return nil
			}}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Stopped || res.Lost != 0 || res.LeftOver != 0 {
		t.Fatalf("drill through the console: %+v\n%s", res, res.RestoreOutput)
	}

	// An attack through a file share: the console names the workstation,
	// says it is cut off, and releases it; the restore goes through too.
	tok2, err := h.NewToken(ctx, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var released string
	shareRes, err := Run(ctx, Options{Share: true, Files: 40, Exe: exe, Log: slog.New(slog.DiscardHandler),
		Hub: &HubLink{URL: h.URL(), Token: tok2, StateDir: filepath.Join(dir, "agent-share"),
			RestoreVia: func(ctx context.Context, hostID, incident string) error {
				row := `tr[data-incident="` + incident + `"] a`
				poll := func(js string) chromedp.Action[chromedp.Void] {
					return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
						_, err := chromedp.Poll[bool](js, chromedp.WithPollingTimeout(45*time.Second))(ctx, tg)
						return err
					})
				}
				run("release the cut-off workstation and restore",
					goTo("incidents"), chromedp.WaitVisible(row), chromedp.Click(row),
					chromedp.WaitVisible("#client"),
					poll(`document.querySelector("#client").textContent.includes("cut off from the file-sharing ports")`),
					chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
						_, err := chromedp.Evaluate[any](`window.confirm = () => true`)(ctx, tg) // the release asks first
						return err
					}),
					chromedp.Click("#release-client"),
					poll(`document.querySelector("#release-state") && document.querySelector("#release-state").textContent.includes("done")`),
					chromedp.Click("#restore"),
					poll(`document.querySelector("#restore-state") && document.querySelector("#restore-state").textContent.includes("done")`),
					shot("10-file-server"),
					chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
						var err error
						released, err = chromedp.Text("#release-state")(ctx, tg)
						return err
					}),
				)
				return nil
			}}})
	if err != nil {
		t.Fatal(err)
	}
	if !shareRes.OK() {
		t.Fatalf("file-server drill through the console: %+v %+v\n%s", shareRes, shareRes.Share, shareRes.RestoreOutput)
	}
	if !strings.Contains(released, "may reach the file-sharing ports again") {
		t.Errorf("the console says of the release: %q", released)
	}
	if !strings.Contains(restoredInBrowser, "restored") {
		t.Errorf("the console says %q", restoredInBrowser)
	}
	if list, _ := h.Store.Blocklist(ctx); len(list) != 1 || list[0].SHA256 != wannacrySHA256 || list[0].CreatedBy != user {
		t.Errorf("fleet blocklist after the browser blocked a hash: %+v", list)
	}
	log, _ := h.Store.Audit(ctx, 100)
	found := false
	for _, e := range log {
		found = found || e.Actor == user && e.Action == "queue-restore"
	}
	if !found {
		t.Error("the restore queued in the browser is not in the audit log")
	}
}
