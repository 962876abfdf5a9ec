package store

import (
	"context"
	"slices"
	"sync"
	"time"
)

// The MQTT session records of Memory: KV's twin (mqtt.go), for unit tests
// of the router and the node. Records expire like KV's: mqttExpiry after
// their last write (checked when read, as if the bucket had removed
// them).

// mqttMemKey names one session in Memory.
type mqttMemKey struct{ principal, clientID string }

// memMQTTState is the MQTT part of Memory, under Memory.mu.
type memMQTTState struct {
	records  map[mqttMemKey]MQTTSession
	expiry   time.Duration // 0: DefaultKVConfig's MQTTSessionExpiry
	watchers map[*memClaimWatcher]struct{}
	gens     genClock // one for the whole Memory: every handle sees every notice at once
}

// memClaimWatcher is one running WatchMQTTClaims: a queue filled under
// Memory.mu and drained by the watch goroutine, which calls fn with no
// store lock held.
type memClaimWatcher struct {
	mu     sync.Mutex
	queue  []claimNotice
	notify chan struct{} // cap 1: "queue is not empty"
}

// SetMQTTExpiry sets how long an MQTT session record lives after its last
// write (KVConfig.MQTTSessionExpiry of a KV). Default 24 h.
func (m *Memory) SetMQTTExpiry(d time.Duration) {
	m.mu.Lock()
	m.mqtt.expiry = d
	m.mu.Unlock()
}

// mqttRecord returns the live record of k, dropping it if it expired.
// Caller holds m.mu.
func (m *Memory) mqttRecord(k mqttMemKey, now time.Time) (MQTTSession, bool) {
	r, ok := m.mqtt.records[k]
	if !ok {
		return MQTTSession{}, false
	}
	exp := m.mqtt.expiry
	if exp == 0 {
		exp = DefaultKVConfig().MQTTSessionExpiry
	}
	if now.Sub(r.Updated) >= exp {
		delete(m.mqtt.records, k)
		return MQTTSession{}, false
	}
	return r, true
}

// mqttPut stores r (with its own copy of the subscriptions). Caller holds
// m.mu.
func (m *Memory) mqttPut(k mqttMemKey, r MQTTSession) {
	if m.mqtt.records == nil {
		m.mqtt.records = make(map[mqttMemKey]MQTTSession)
	}
	r.Subs = slices.Clone(r.Subs)
	m.mqtt.records[k] = r
}

// mqttBegin checks the ids and the store's state and locks m.mu; the
// caller unlocks it if err is nil.
func (m *Memory) mqttBegin(ctx context.Context, principal, clientID string) (mqttMemKey, error) {
	if _, err := mqttKey(principal, clientID); err != nil {
		return mqttMemKey{}, err
	}
	m.mu.Lock()
	if err := m.check(ctx); err != nil {
		m.mu.Unlock()
		return mqttMemKey{}, err
	}
	return mqttMemKey{principal, clientID}, nil
}

func (m *Memory) ClaimMQTT(ctx context.Context, principal, clientID, node string, clean bool, startPos uint64) (prev MQTTSession, found bool, cur MQTTSession, err error) {
	k, err := m.mqttBegin(ctx, principal, clientID)
	if err != nil {
		return MQTTSession{}, false, MQTTSession{}, err
	}
	defer m.mu.Unlock()
	now := time.Now().UTC()
	prev, found = m.mqttRecord(k, now)
	prev.Subs = slices.Clone(prev.Subs)
	cur = claimed(prev, found, principal, clientID, node, clean, startPos, m.mqtt.gens.next(prev.Gen, now), now)
	if clean {
		delete(m.mqtt.records, k) // a clean session keeps no record
	} else {
		m.mqttPut(k, cur)
	}
	m.mqtt.gens.saw(cur.Gen)
	n := claimNotice{Principal: principal, ClientID: clientID, Node: node, Gen: cur.Gen}
	for w := range m.mqtt.watchers {
		w.mu.Lock()
		w.queue = append(w.queue, n)
		w.mu.Unlock()
		select {
		case w.notify <- struct{}{}:
		default:
		}
	}
	return prev, found, cur, nil
}

// mqttUpdate is Memory's updateMQTT (see KV's).
func (m *Memory) mqttUpdate(ctx context.Context, principal, clientID string, gen uint64, change func(*MQTTSession) bool) error {
	k, err := m.mqttBegin(ctx, principal, clientID)
	if err != nil {
		return err
	}
	defer m.mu.Unlock()
	now := time.Now().UTC()
	r, ok := m.mqttRecord(k, now)
	if !ok || r.Gen != gen {
		return ErrStale
	}
	if !change(&r) {
		return nil
	}
	r.Updated = now
	m.mqttPut(k, r)
	return nil
}

func (m *Memory) SaveMQTTSubs(ctx context.Context, principal, clientID string, gen uint64, subs []MQTTSub) error {
	return m.mqttUpdate(ctx, principal, clientID, gen, func(r *MQTTSession) bool {
		r.Subs = subs
		return true
	})
}

func (m *Memory) SaveMQTTQoS2(ctx context.Context, principal, clientID string, gen uint64, ids []MQTTQoS2) error {
	ids = slices.Clone(ids)
	return m.mqttUpdate(ctx, principal, clientID, gen, func(r *MQTTSession) bool {
		if slices.Equal(r.QoS2, ids) {
			return false
		}
		r.QoS2 = ids
		return true
	})
}

func (m *Memory) SaveMQTTPos(ctx context.Context, principal, clientID string, gen uint64, pos uint64) error {
	return m.mqttUpdate(ctx, principal, clientID, gen, func(r *MQTTSession) bool {
		if pos <= r.Pos {
			return false
		}
		r.Pos = pos
		return true
	})
}

func (m *Memory) SetMQTTPos(ctx context.Context, principal, clientID string, gen uint64, pos uint64) error {
	return m.mqttUpdate(ctx, principal, clientID, gen, func(r *MQTTSession) bool {
		if pos == r.Pos {
			return false
		}
		r.Pos = pos
		return true
	})
}

func (m *Memory) TouchMQTT(ctx context.Context, principal, clientID string, gen uint64) error {
	return m.mqttUpdate(ctx, principal, clientID, gen, func(*MQTTSession) bool { return true })
}

func (m *Memory) DeleteMQTT(ctx context.Context, principal, clientID string, gen uint64) error {
	k, err := m.mqttBegin(ctx, principal, clientID)
	if err != nil {
		return err
	}
	defer m.mu.Unlock()
	r, ok := m.mqttRecord(k, time.Now())
	if !ok {
		return nil
	}
	if r.Gen != gen {
		return ErrStale
	}
	delete(m.mqtt.records, k)
	return nil
}

func (m *Memory) GetMQTT(ctx context.Context, principal, clientID string) (MQTTSession, error) {
	k, err := m.mqttBegin(ctx, principal, clientID)
	if err != nil {
		return MQTTSession{}, err
	}
	defer m.mu.Unlock()
	r, ok := m.mqttRecord(k, time.Now())
	if !ok {
		return MQTTSession{}, ErrNotFound
	}
	r.Subs = slices.Clone(r.Subs)
	return r, nil
}

// WatchMQTTClaims implements MQTTSessions.WatchMQTTClaims. It blocks
// until ctx is done or the store is closed, and then returns nil.
func (m *Memory) WatchMQTTClaims(ctx context.Context, fn func(principal, clientID, node string, gen uint64), ready func()) error {
	w := &memClaimWatcher{notify: make(chan struct{}, 1)}
	m.mu.Lock()
	if err := m.check(ctx); err != nil {
		m.mu.Unlock()
		return err
	}
	if m.mqtt.watchers == nil {
		m.mqtt.watchers = make(map[*memClaimWatcher]struct{})
	}
	m.mqtt.watchers[w] = struct{}{}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.mqtt.watchers, w)
		m.mu.Unlock()
	}()
	if ready != nil {
		ready()
	}
	var batch []claimNotice
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.done:
			return nil
		case <-w.notify:
		}
		w.mu.Lock()
		batch, w.queue = w.queue, batch[:0]
		w.mu.Unlock()
		for _, n := range batch {
			if ctx.Err() != nil {
				return nil
			}
			fn(n.Principal, n.ClientID, n.Node, n.Gen)
		}
	}
}
