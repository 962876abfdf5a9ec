package membership

// Node describes one pushring node as the others see it.
type Node struct {
	ID   string   `json:"id"`
	MQTT []string `json:"mqtt"` // client-facing MQTT addresses, host:port
	// MQTTTLS are the client-facing MQTT-over-TLS addresses, host:port
	// (none when the node serves no TLS).
	MQTTTLS  []string `json:"mqtt_tls,omitempty"`
	HTTP     string   `json:"http"`
	Version  string   `json:"version"`
	State    string   `json:"state"`      // StateAlive, StateDead or StateLeft
	RingPart float64  `json:"ring_share"` // fraction of the ring this node owns
}

// Static is a membership of exactly one node: every principal and every
// group lives on it, with no gossip. The node always runs a Cluster, even
// alone; Static is for tests and tools that need a placement.
type Static struct {
	self Node
}

// NewStatic returns the membership of a lone node.
func NewStatic(self Node) *Static {
	self.State = "alive"
	self.RingPart = 1
	return &Static{self: self}
}

// Self is this node.
func (s *Static) Self() Node { return s.self }

// Home is the node that delivers to principal id.
func (s *Static) Home(id string) string { return s.self.ID }

// Owner is the node that resolves group gid.
func (s *Static) Owner(gid string) string { return s.self.ID }

// HomeNode returns the full description of Home(id).
func (s *Static) HomeNode(id string) Node { return s.self }

// Nodes lists the live nodes.
func (s *Static) Nodes() []Node { return []Node{s.self} }
