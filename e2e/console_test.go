package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pushring/pushring/mqtt/mqttc"
)

// consoleShots is where TestConsole writes its screenshots: the
// directory CONSOLE_SCREENSHOTS names (the README's come from
// CONSOLE_SCREENSHOTS=$PWD/docs/console), else a temporary one.
func consoleShots(t *testing.T) string {
	if d := os.Getenv("CONSOLE_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// TestConsole drives the web console in headless Chromium against a
// 3-node cluster of real processes: it logs in with the admin key, sees
// the three nodes alive, creates a group and adds a member and a
// publisher, sees a message a device publishes over MQTT appear in the
// group's live tail, sees a refused login counted by reason, and, after
// a kill -9 of one node, sees that node marked dead. It saves a
// screenshot of every page.
func TestConsole(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (run scripts/deps.sh, as make test does): %v", err)
	}
	shots := consoleShots(t)
	c := newCluster(t, 3)
	via, victim := c.procs[0], c.procs[2]
	c.mustAPI(via, "POST", "/v1/users", map[string]any{"id": "alice", "password": memberPassword("alice")}, nil)
	var dev struct{ Key string }
	c.mustAPI(via, "POST", "/v1/devices", map[string]any{"id": "sensor-1"}, &dev)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.WindowSize(1280, 860))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelTimeout()

	base := "http://" + via.http + "/console"
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// waitFor polls a JavaScript condition in the page.
	waitFor := func(what, cond string, within time.Duration) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(within))); err != nil {
			page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.hash + " error=" + document.getElementById("error").textContent + "\n" + document.querySelector("main").innerHTML`))
			t.Fatalf("waiting for %s: %v\npage: %s", what, err, page)
		}
	}

	do("the login page", chromedp.Navigate(base), chromedp.WaitVisible(chromedp.ID("login-key")))
	shot("login")
	do("a wrong key", chromedp.SendKeys(chromedp.ID("login-key"), "not-the-admin-key"), chromedp.Click(chromedp.ID("login-btn")))
	waitFor("the refusal", `document.getElementById("login-error").textContent !== ""`, 10*time.Second)
	do("logging in", chromedp.SendKeys(chromedp.ID("login-key"), adminKey), chromedp.Click(chromedp.ID("login-btn")))
	waitFor("three nodes alive", `document.querySelectorAll('#nodes tr[data-state="alive"]').length === 3`, 20*time.Second)
	// The live figures come in (every node's sample).
	waitFor("every node's figures", `[...document.querySelectorAll('#nodes tr')].every(r => !r.textContent.includes("–"))`, 20*time.Second)
	shot("cluster")

	// A group, made and filled through the console.
	do("the groups page", chromedp.Navigate(base+"#groups"), chromedp.WaitVisible(chromedp.ID("group-create-id")))
	do("creating a group", chromedp.SendKeys(chromedp.ID("group-create-id"), "lobby"), chromedp.Click(chromedp.ID("group-create-btn")))
	waitFor("the group's page", `(document.getElementById("group-id") || {}).textContent === "lobby"`, 10*time.Second)
	do("adding a member", chromedp.SendKeys(chromedp.ID("member-add-id"), "alice"), chromedp.Click(chromedp.ID("member-add-btn")))
	waitFor("alice listed", `document.querySelector('#members li[data-id="alice"]') !== null`, 10*time.Second)
	do("adding a publisher", chromedp.SendKeys(chromedp.ID("publisher-add-id"), "sensor-1"), chromedp.Click(chromedp.ID("publisher-add-btn")))
	waitFor("sensor-1 listed", `document.querySelector('#publishers li[data-id="sensor-1"]') !== null`, 10*time.Second)
	waitFor("the tail open", `document.getElementById("tail").dataset.open === "1"`, 10*time.Second)
	var members struct {
		Members []string `json:"members"`
	}
	c.mustAPI(c.procs[1], "GET", "/v1/groups/lobby", nil, &members)
	if len(members.Members) != 1 || members.Members[0] != "alice" {
		t.Fatalf("the group made in the console, read on n2: %+v", members)
	}

	// alice online, and a device's message in the tail.
	var login struct{ Token string }
	req, _ := newLogin(via, "alice", memberPassword("alice"))
	if err := doJSON(req, &login); err != nil {
		t.Fatal(err)
	}
	alice, err := mqttc.Dial(c.procs[1].mqtt, mqttc.Options{ClientID: "alice-phone", Username: "alice", Password: login.Token})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Abort()
	waitFor("alice online", `[...document.querySelectorAll('#online li')].some(li => li.textContent === "alice")`, 15*time.Second)
	d, err := mqttc.Dial(c.procs[2].mqtt, mqttc.Options{ClientID: "sensor-1", Username: "sensor-1", Password: dev.Key})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Abort()
	go d.Run(nil)
	if !d.Publish("/group/lobby", 1, []byte("temperature 21.5"), nil) || d.Flush() != nil {
		t.Fatal("publish failed")
	}
	waitFor("the message in the tail", `[...document.querySelectorAll('#tail li')].some(li => li.textContent.includes("sensor-1") && li.textContent.includes("temperature 21.5"))`, 15*time.Second)
	shot("group")

	// A refused MQTT login shows by reason.
	if _, err := mqttc.Dial(via.mqtt, mqttc.Options{ClientID: "x", Username: "alice", Password: "not-a-token"}); err == nil {
		t.Fatal("a bad token logged in")
	}
	do("the refusals page", chromedp.Navigate(base+"#refusals"))
	waitFor("the bad-credentials refusal", `[...document.querySelectorAll('#refusals tr')].some(r => r.dataset.reason === "mqtt:connect_bad_credentials")`, 15*time.Second)
	shot("refusals")
	do("the users page", chromedp.Navigate(base+"#users"))
	waitFor("alice listed", `document.querySelector('#users tr[data-id="alice"]') !== null`, 10*time.Second)
	shot("users")
	do("the devices page", chromedp.Navigate(base+"#devices"))
	waitFor("sensor-1 listed", `document.querySelector('#devices tr[data-id="sensor-1"]') !== null`, 10*time.Second)
	shot("devices")
	do("the webhooks page", chromedp.Navigate(base+"#webhooks"), chromedp.WaitVisible(chromedp.ID("webhook-url")))
	shot("webhooks")

	// A node dies.
	do("the cluster page", chromedp.Navigate(base+"#cluster"))
	waitFor("three nodes alive", `document.querySelectorAll('#nodes tr[data-state="alive"]').length === 3`, 20*time.Second)
	killed := time.Now()
	victim.cmd.Process.Kill()
	<-victim.exited
	waitFor(victim.id+" marked dead", fmt.Sprintf(`document.querySelector('#nodes tr[data-node=%q][data-state="dead"]') !== null`, victim.id), deadBound+10*time.Second)
	t.Logf("console: %s shown dead %v after the kill -9", victim.id, time.Since(killed).Round(100*time.Millisecond))
	shot("cluster-dead")
	text, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("nodes")))
	if err != nil || !strings.Contains(text, "dead") {
		t.Fatalf("nodes table %q (%v)", text, err)
	}
}
