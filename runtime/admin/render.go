package admin

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/middleware"
	"github.com/ilpfleet/ilpfleet/runtime/settlement"
)

// The js* types are the JSON shapes of the JS admin API. Struct field order is the key
// order JS prints; maps (keyed by account or prefix) come out sorted.

type jsRoute struct {
	NextHop string `json:"nextHop"`
	Path    string `json:"path"` // space-separated, as JS formatRouteAsJson
}

type jsStatus struct {
	Balances          map[string]string  `json:"balances"`
	Connected         map[string]bool    `json:"connected"`
	LocalRoutingTable map[string]jsRoute `json:"localRoutingTable"`
}

type jsAccounts struct {
	Address  string                    `json:"address"`
	Accounts map[string]jsAccountState `json:"accounts"`
}

type jsAccountState struct {
	Info      jsAccountInfo `json:"info"`
	Connected bool          `json:"connected"`
	AdminInfo bool          `json:"adminInfo"`
}

// jsAccountInfo is an account's configuration in the JS config's JSON form (amounts as
// strings, periods in milliseconds), without its options.
type jsAccountInfo struct {
	Relation          config.Relation `json:"relation"`
	Plugin            string          `json:"plugin"`
	AssetCode         string          `json:"assetCode"`
	AssetScale        uint8           `json:"assetScale"`
	Balance           *jsBalanceConf  `json:"balance,omitempty"`
	MaxPacketAmount   string          `json:"maxPacketAmount,omitempty"`
	Throughput        *jsThroughput   `json:"throughput,omitempty"`
	RateLimit         *jsRateLimit    `json:"rateLimit,omitempty"`
	Deduplicate       *jsDeduplicate  `json:"deduplicate,omitempty"`
	SendRoutes        *bool           `json:"sendRoutes,omitempty"`
	ReceiveRoutes     *bool           `json:"receiveRoutes,omitempty"`
	ILPAddressSegment string          `json:"ilpAddressSegment,omitempty"`
	// ilpfleet's own: the engine that settles the account (a URL, no credentials).
	SettlementEngine *jsSettlementEngine `json:"settlementEngine,omitempty"`
}

type jsSettlementEngine struct {
	URL         string `json:"url"`
	SettleEvery int64  `json:"settleEvery,omitempty"` // ms, as the config
}

type jsBalanceConf struct {
	Minimum         string `json:"minimum"`
	Maximum         string `json:"maximum"`
	SettleThreshold string `json:"settleThreshold,omitempty"`
	SettleTo        string `json:"settleTo"`
}

type jsThroughput struct {
	RefillPeriod   int64  `json:"refillPeriod,omitempty"`
	IncomingAmount string `json:"incomingAmount,omitempty"`
	OutgoingAmount string `json:"outgoingAmount,omitempty"`
}

type jsRateLimit struct {
	RefillPeriod int64  `json:"refillPeriod"`
	RefillCount  uint64 `json:"refillCount"`
	Capacity     uint64 `json:"capacity"`
}

type jsDeduplicate struct {
	CleanupInterval int64 `json:"cleanupInterval"`
	PacketLifetime  int64 `json:"packetLifetime"`
}

type jsBalances struct {
	Accounts map[string]jsBalance `json:"accounts"`
}

type jsBalance struct {
	Balance string `json:"balance"`
	Minimum string `json:"minimum"`
	Maximum string `json:"maximum"`
}

type jsRouting struct {
	RoutingTableID         string              `json:"routingTableId"`
	CurrentEpoch           uint32              `json:"currentEpoch"`
	LocalRoutingTable      map[string]jsRoute  `json:"localRoutingTable"`
	ForwardingRoutingTable map[string]*jsRoute `json:"forwardingRoutingTable"` // withdrawn: null
	RoutingLog             []jsRouteUpdate     `json:"routingLog"`
	Peers                  map[string]jsPeer   `json:"peers"`
}

type jsRouteUpdate struct {
	Prefix string   `json:"prefix"`
	Route  *jsRoute `json:"route,omitempty"` // JS leaves the key out of a withdrawal
	Epoch  uint32   `json:"epoch"`
}

type jsPeer struct {
	Send    *jsPeerSend    `json:"send,omitempty"`
	Receive *jsPeerReceive `json:"receive,omitempty"`
}

type jsPeerSend struct {
	Epoch uint32 `json:"epoch"`
	Mode  string `json:"mode"`
}

type jsPeerReceive struct {
	RoutingTableID string `json:"routingTableId"`
	Epoch          uint32 `json:"epoch"`
}

type jsRates struct {
	Backend string            `json:"backend"`
	Rates   map[string]string `json:"rates,omitempty"`
	Source  *jsRatesSource    `json:"source,omitempty"` // ilpfleet's own
}

type jsRatesSource struct {
	URL       string `json:"url"`
	Date      string `json:"date,omitempty"`
	FetchedAt string `json:"fetchedAt,omitempty"`
	Fresh     bool   `json:"fresh"`
	LastError string `json:"lastError,omitempty"`
}

type jsAlerts struct {
	Alerts []jsAlert `json:"alerts"`
}

type jsAlert struct {
	ID          int64  `json:"id"`
	AccountID   string `json:"accountId"`
	TriggeredBy string `json:"triggeredBy"`
	Message     string `json:"message"`
	Count       int    `json:"count"`
	CreatedAt   string `json:"createdAt"`
	UpdatedAt   string `json:"updatedAt"`
}

// unknownAddress is what JS shows before it knows its address.
const unknownAddress = "unknown"

func renderAddress(a ilp.Address) string {
	if a == "" {
		return unknownAddress
	}
	return string(a)
}

// bound prints a limit as JS prints a BigNumber: nil is the infinity of its side.
func bound(v *int64, infinity string) string {
	if v == nil {
		return infinity
	}
	return strconv.FormatInt(*v, 10)
}

func optUint(v *uint64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatUint(*v, 10)
}

func renderRoute(r RouteInfo) jsRoute {
	return jsRoute{NextHop: r.NextHop, Path: strings.Join(r.Path, " ")}
}

func renderRouteTable(routes []RouteInfo) map[string]jsRoute {
	m := make(map[string]jsRoute, len(routes))
	for _, r := range routes {
		m[r.Prefix] = renderRoute(r)
	}
	return m
}

func renderAccountInfo(a config.Account) jsAccountInfo {
	info := jsAccountInfo{
		Relation: a.Relation, Plugin: a.Plugin, AssetCode: a.AssetCode, AssetScale: a.AssetScale,
		MaxPacketAmount: optUint(a.MaxPacketAmount),
		SendRoutes:      a.SendRoutes, ReceiveRoutes: a.ReceiveRoutes,
		ILPAddressSegment: a.ILPAddressSegment,
	}
	if se := a.SettlementEngine; se != nil {
		info.SettlementEngine = &jsSettlementEngine{URL: settlement.RedactURL(se.URL), SettleEvery: se.SettleEvery.Milliseconds()}
	}
	if b := a.Balance; b != nil {
		info.Balance = &jsBalanceConf{
			Minimum: bound(b.Minimum, "-Infinity"), Maximum: bound(b.Maximum, "Infinity"),
			SettleTo: strconv.FormatInt(b.SettleTo, 10),
		}
		if b.SettleThreshold != nil {
			info.Balance.SettleThreshold = strconv.FormatInt(*b.SettleThreshold, 10)
		}
	}
	if t := a.Throughput; t != nil {
		info.Throughput = &jsThroughput{RefillPeriod: t.RefillPeriod.Milliseconds(),
			IncomingAmount: optUint(t.IncomingAmount), OutgoingAmount: optUint(t.OutgoingAmount)}
	}
	if r := a.RateLimit; r != nil {
		info.RateLimit = &jsRateLimit{RefillPeriod: r.RefillPeriod.Milliseconds(),
			RefillCount: r.RefillCount, Capacity: r.Capacity}
	}
	if d := a.Deduplicate; d != nil {
		info.Deduplicate = &jsDeduplicate{CleanupInterval: d.CleanupInterval.Milliseconds(),
			PacketLifetime: d.PacketLifetime.Milliseconds()}
	}
	return info
}

func renderAccounts(address ilp.Address, accounts []AccountInfo) jsAccounts {
	out := jsAccounts{Address: renderAddress(address), Accounts: make(map[string]jsAccountState, len(accounts))}
	for _, a := range accounts {
		// adminInfo: no Go link offers plugin admin info (JS plugin.getAdminInfo).
		out.Accounts[a.ID] = jsAccountState{Info: renderAccountInfo(a.Config), Connected: a.Connected}
	}
	return out
}

func renderBalances(balances map[string]BalanceInfo) jsBalances {
	out := jsBalances{Accounts: make(map[string]jsBalance, len(balances))}
	for id, b := range balances {
		out.Accounts[id] = jsBalance{
			Balance: strconv.FormatInt(b.Balance, 10),
			Minimum: bound(b.Minimum, "-Infinity"),
			Maximum: bound(b.Maximum, "Infinity"),
		}
	}
	return out
}

func renderStatus(balances map[string]BalanceInfo, accounts []AccountInfo, routes []RouteInfo) jsStatus {
	out := jsStatus{
		Balances:          make(map[string]string, len(balances)),
		Connected:         make(map[string]bool, len(accounts)),
		LocalRoutingTable: renderRouteTable(routes),
	}
	for id, b := range balances {
		out.Balances[id] = strconv.FormatInt(b.Balance, 10)
	}
	for _, a := range accounts {
		out.Connected[a.ID] = a.Connected
	}
	return out
}

func renderUpdate(u RouteUpdate) jsRouteUpdate {
	out := jsRouteUpdate{Prefix: u.Prefix, Epoch: u.Epoch}
	if u.Route != nil {
		r := renderRoute(*u.Route)
		out.Route = &r
	}
	return out
}

func renderRouting(ri RoutingInfo) jsRouting {
	out := jsRouting{
		RoutingTableID:         ri.TableID,
		CurrentEpoch:           ri.Epoch,
		LocalRoutingTable:      renderRouteTable(ri.Local),
		ForwardingRoutingTable: make(map[string]*jsRoute, len(ri.Forwarding)),
		RoutingLog:             make([]jsRouteUpdate, 0, len(ri.Log)),
		Peers:                  make(map[string]jsPeer, len(ri.Peers)),
	}
	for _, u := range ri.Forwarding {
		out.ForwardingRoutingTable[u.Prefix] = renderUpdate(u).Route
	}
	for _, u := range ri.Log {
		out.RoutingLog = append(out.RoutingLog, renderUpdate(u))
	}
	for id, p := range ri.Peers {
		var jp jsPeer
		if p.Send != nil {
			jp.Send = &jsPeerSend{Epoch: p.Send.Epoch, Mode: p.Send.Mode}
		}
		if p.Receive != nil {
			jp.Receive = &jsPeerReceive{RoutingTableID: p.Receive.RoutingTableID, Epoch: p.Receive.Epoch}
		}
		out.Peers[id] = jp
	}
	return out
}

// jsDate formats t as JS Date.prototype.toJSON does: UTC, milliseconds, "Z".
func jsDate(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

func renderAlerts(alerts []middleware.Alert) jsAlerts {
	out := jsAlerts{Alerts: make([]jsAlert, 0, len(alerts))}
	for _, a := range alerts {
		out.Alerts = append(out.Alerts, jsAlert{ID: a.ID, AccountID: a.AccountID, TriggeredBy: a.TriggeredBy,
			Message: a.Message, Count: a.Count, CreatedAt: jsDate(a.CreatedAt), UpdatedAt: jsDate(a.UpdatedAt)})
	}
	return out
}

type jsSettlements struct {
	Settlements []jsSettlement `json:"settlements"`
}

type jsSettlement struct {
	Account        string `json:"account"`
	IdempotencyKey string `json:"idempotencyKey"`
	Engine         string `json:"engine"`
	Amount         string `json:"amount"`
}

func renderSettlements(ss []SettlementInfo) jsSettlements {
	out := jsSettlements{Settlements: make([]jsSettlement, 0, len(ss))}
	for _, s := range ss {
		out.Settlements = append(out.Settlements, jsSettlement{Account: s.Account, IdempotencyKey: s.Key,
			Engine: settlement.RedactURL(s.Engine), Amount: strconv.FormatInt(s.Amount, 10)})
	}
	return out
}

// renderRateRow writes each rate as a JSON number from its exact decimal string, never through a
// float64 (JS prints a Number: with the 15 significant digits of its rates, the same value,
// though JS writes 1e-7 where this writes 0.0000001).
func renderRateRow(row map[string]decimal.Decimal) map[string]json.Number {
	out := make(map[string]json.Number, len(row))
	for id, r := range row {
		out[id] = json.Number(r.String())
	}
	return out
}

func renderRates(r RatesInfo) jsRates {
	out := jsRates{Backend: r.Backend, Rates: r.Rates}
	if s := r.Source; s != nil {
		out.Source = &jsRatesSource{URL: s.URL, Date: s.Date, Fresh: s.Fresh, LastError: s.LastError}
		if !s.FetchedAt.IsZero() {
			out.Source.FetchedAt = s.FetchedAt.UTC().Format(time.RFC3339)
		}
	}
	return out
}
