package connector

import "github.com/prometheus/client_golang/prometheus"

// MetricAccountConnected is whether each account's link is up: 1 or 0, as the admin API's
// connected and the Account's CONNECTED column say.
const MetricAccountConnected = "ilp_connector_account_connected"

// accountsConnected collects MetricAccountConnected from the accounts in force at each scrape:
// a partition or a peer that went away shows at once, where the packet counters only show
// rejects once packets are sent, and a reload adds and removes series with its accounts.
type accountsConnected struct {
	c    *Connector
	desc *prometheus.Desc
}

func newAccountsConnected(c *Connector) accountsConnected {
	return accountsConnected{c: c, desc: prometheus.NewDesc(MetricAccountConnected,
		"Whether the account's link is up (1) or not (0): for a mini-accounts listener, whether a child is connected", []string{"account"}, nil)}
}

func (a accountsConnected) Describe(ch chan<- *prometheus.Desc) { ch <- a.desc }

func (a accountsConnected) Collect(ch chan<- prometheus.Metric) {
	accts := a.c.accounts.Load()
	if accts == nil {
		return
	}
	for id, acct := range *accts {
		up := 0.0
		if acct.link.Connected() {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(a.desc, prometheus.GaugeValue, up, id)
	}
}
