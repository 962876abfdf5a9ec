package main

// output.go: the human-readable forms of API results (the default; --json
// prints the response body instead).

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pushring/pushring/client"
)

func printDevice(w io.Writer, d *client.Device) {
	fmt.Fprintf(w, "id:  %s\nkey: %s\n", d.ID, d.Key)
	fmt.Fprintln(w, "(the key is shown only once: store it now)")
}

func printWebhook(w io.Writer, h *client.Webhook) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\n", h.ID)
	fmt.Fprintf(tw, "url:\t%s\n", h.URL)
	fmt.Fprintf(tw, "events:\t%s\n", eventTypes(h.Events))
	fmt.Fprintf(tw, "secret:\t%s\n", h.Secret)
	tw.Flush()
	fmt.Fprintln(w, "(the secret is shown only once: store it now; it signs every request, X-Pushring-Signature)")
}

// eventTypes renders the event types of a webhook: none means all.
func eventTypes(types []string) string {
	if len(types) == 0 {
		return "all"
	}
	return strings.Join(types, ",")
}

// printUserPresence says whether a user is online and where.
func printUserPresence(w io.Writer, p *client.UserPresence, asked string) {
	id := or(p.ID, asked)
	if p.Online {
		fmt.Fprintf(w, "%s is online, connected to %s\n", id, list(p.Nodes))
	} else {
		fmt.Fprintf(w, "%s is offline\n", id)
	}
	printIncomplete(w, p.Complete, p.MissingNodes)
}

// printGroupPresence lists the members online, one a line, then their
// count.
func printGroupPresence(w io.Writer, p *client.GroupPresence) {
	for _, id := range p.Online {
		fmt.Fprintln(w, id)
	}
	if p.Truncated {
		fmt.Fprintf(w, "%d member(s) online, %d listed (truncated: a node had more than it lists; a member connected to two nodes counts twice)\n",
			p.Count, len(p.Online))
	} else {
		fmt.Fprintf(w, "%d member(s) online\n", p.Count)
	}
	printIncomplete(w, p.Complete, p.MissingNodes)
}

// printIncomplete notes the nodes that did not answer a presence query.
func printIncomplete(w io.Writer, complete bool, missing []string) {
	if complete {
		return
	}
	fmt.Fprintf(w, "incomplete: %s did not answer (clients connected there are not counted)\n", list(missing))
}

func printGroup(w io.Writer, g *client.Group) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "group:\t%s\n", g.ID)
	fmt.Fprintf(tw, "members can publish:\t%s\n", yesNo(g.MembersCanPublish))
	fmt.Fprintf(tw, "members (%d):\t%s\n", len(g.Members), list(g.Members))
	fmt.Fprintf(tw, "publishers (%d):\t%s\n", len(g.Publishers), list(g.Publishers))
	if !g.Created.IsZero() {
		fmt.Fprintf(tw, "created:\t%s\n", g.Created.UTC().Format(time.RFC3339))
	}
	tw.Flush()
}

func printSession(w io.Writer, s *client.Session, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "token:\t%s\n", s.Token)
	fmt.Fprintf(tw, "expires:\t%s\n", expiry(s.ExpiresAt, now))
	fmt.Fprintf(tw, "private topic:\t%s\n", s.PrivateTopic)
	fmt.Fprintf(tw, "mqtt:\t%s\n", list(s.MQTT))
	if len(s.MQTTTLS) > 0 {
		fmt.Fprintf(tw, "mqtt tls:\t%s\n", list(s.MQTTTLS))
	}
	tw.Flush()
}

func printSessionInfo(w io.Writer, s *client.SessionInfo, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\n", s.Principal())
	if s.Kind != "" {
		fmt.Fprintf(tw, "kind:\t%s\n", s.Kind)
	}
	if !s.ExpiresAt.IsZero() {
		fmt.Fprintf(tw, "expires:\t%s\n", expiry(s.ExpiresAt, now))
	}
	if s.PrivateTopic != "" {
		fmt.Fprintf(tw, "private topic:\t%s\n", s.PrivateTopic)
	}
	if len(s.MQTT) > 0 {
		fmt.Fprintf(tw, "mqtt:\t%s\n", list(s.MQTT))
	}
	tw.Flush()
}

func printRoute(w io.Writer, r *client.Route, asked string) {
	n := r.HomeNode()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\n", or(r.ID, asked))
	fmt.Fprintf(tw, "home node:\t%s\n", or(n.ID, "?"))
	if len(n.MQTT) > 0 {
		fmt.Fprintf(tw, "mqtt:\t%s\n", list(n.MQTT))
	}
	if len(n.MQTTTLS) > 0 {
		fmt.Fprintf(tw, "mqtt tls:\t%s\n", list(n.MQTTTLS))
	}
	if n.HTTP != "" {
		fmt.Fprintf(tw, "http:\t%s\n", n.HTTP)
	}
	tw.Flush()
}

func printCluster(w io.Writer, c *client.Cluster) {
	nodes := c.AllNodes()
	if c.Name != "" {
		fmt.Fprintf(w, "cluster %s, ", c.Name)
	}
	fmt.Fprintf(w, "%d node(s)\n", len(nodes))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tRING\tMQTT\tHTTP\tVERSION")
	for _, n := range nodes {
		id := n.ID
		if c.Self.ID != "" && id == c.Self.ID {
			id += "*"
		}
		ring := "-"
		if n.RingShare > 0 {
			ring = strconv.FormatFloat(n.RingShare*100, 'f', 1, 64) + "%"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", id, or(n.State, "-"), ring,
			or(strings.Join(n.MQTT, ","), "-"), or(n.HTTP, "-"), or(n.Version, "-"))
	}
	tw.Flush()
	if c.Self.ID != "" {
		fmt.Fprintln(w, "* the node that answered")
	}
}

// printPrincipal shows a user or device.
func printPrincipal(w io.Writer, id, kind string, created client.Timestamp) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\n", id)
	fmt.Fprintf(tw, "kind:\t%s\n", kind)
	fmt.Fprintf(tw, "created:\t%s\n", timestamp(created))
	tw.Flush()
}

// printRows prints the entries of a list, one a line: the id, then the
// other columns aligned (quiet: the id only).
func printRows(w io.Writer, rows [][]string, quiet bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		if quiet {
			r = r[:1]
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func printMemberships(w io.Writer, m *client.Memberships) {
	fmt.Fprintf(w, "%d group(s)\n", len(m.Groups))
	if len(m.Groups) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tMEMBER\tPUBLISHER")
	for _, g := range m.Groups {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", g.ID, yesNo(g.Member), yesNo(g.Publisher))
	}
	tw.Flush()
}

func printLoginSessions(w io.Writer, s *client.LoginSessions, now time.Time) {
	fmt.Fprintf(w, "%d login session(s)\n", len(s.Sessions))
	if len(s.Sessions) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCREATED\tEXPIRES")
	current := false
	for _, ls := range s.Sessions {
		id := ls.ID
		if ls.Current {
			id += "*"
			current = true
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", id, timestamp(ls.Created), expiry(ls.ExpiresAt, now))
	}
	tw.Flush()
	if current {
		fmt.Fprintln(w, "* the session of --token")
	}
}

// roleMessage is the confirmation of a membership change.
func roleMessage(gid, id, role string, on bool) string {
	what := "a member"
	if role == "publishers" {
		what = "a publisher"
	}
	if on {
		return fmt.Sprintf("%s is now %s of %s", id, what, gid)
	}
	return fmt.Sprintf("%s is no longer %s of %s", id, what, gid)
}

// expiry renders an expiry time with the time left.
func expiry(t client.Timestamp, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	s := t.UTC().Format(time.RFC3339)
	if d := t.Sub(now).Round(time.Second); d > 0 {
		return s + " (in " + d.String() + ")"
	}
	return s + " (expired)"
}

// timestamp renders a time in UTC, RFC 3339, or "-" for none.
func timestamp(t client.Timestamp) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func list(ss []string) string {
	if len(ss) == 0 {
		return "-"
	}
	return strings.Join(ss, ", ")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// or returns s, or def if s is empty.
func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
