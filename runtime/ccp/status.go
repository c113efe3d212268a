package ccp

import (
	"slices"
	"sort"

	"github.com/ilpfleet/ilpfleet/runtime/admin"
)

// Status is the broadcaster's state as the admin API's GET /routing shows it (JS
// RouteBroadcaster.getStatus): table id, epoch, local and forwarding tables, the log, and
// the send and receive state of every peer.
func (s *Speaker) Status() admin.RoutingInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := admin.RoutingInfo{TableID: s.tableID.String(), Epoch: s.epoch, Peers: map[string]admin.PeerRouting{}}
	if s.table != nil {
		for _, r := range s.table.Routes() {
			info.Local = append(info.Local, admin.RouteInfo{Prefix: r.Prefix, NextHop: r.NextHop, Path: slices.Clone(r.Path)})
		}
	}
	for prefix, e := range s.fwd {
		if e.route != nil {
			info.Forwarding = append(info.Forwarding, update(prefix, e))
		}
	}
	sort.Slice(info.Forwarding, func(i, j int) bool { return info.Forwarding[i].Prefix < info.Forwarding[j].Prefix })
	for _, e := range s.log_ {
		if !e.superseded {
			info.Log = append(info.Log, update(e.prefix, e))
		}
	}
	for id, p := range s.peers {
		var pr admin.PeerRouting
		if p.send != nil {
			pr.Send = &admin.PeerSend{Epoch: p.send.lastKnownEpoch, Mode: p.send.mode.String()}
		}
		if p.recv != nil {
			pr.Receive = &admin.PeerReceive{RoutingTableID: p.recv.tableID.String(), Epoch: p.recv.epoch}
		}
		if pr.Send != nil || pr.Receive != nil {
			info.Peers[id] = pr
		}
	}
	return info
}

func update(prefix string, e *logEntry) admin.RouteUpdate {
	u := admin.RouteUpdate{Prefix: prefix, Epoch: e.epoch}
	if e.route != nil {
		u.Route = &admin.RouteInfo{Prefix: prefix, NextHop: e.route.nextHop, Path: slices.Clone(e.route.path)}
	}
	return u
}
