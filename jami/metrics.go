package jami

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector reports the DHT node's counters at scrape time: nothing until
// a running Service is attached (so nothing while jami.enabled is off).
// Register it once, at start, and Attach the service when it runs.
type Collector struct {
	svc atomic.Pointer[Service]
}

// NewCollector makes a collector with no service attached.
func NewCollector() *Collector { return &Collector{} }

// Attach makes the collector report s (nil: report nothing).
func (c *Collector) Attach(s *Service) { c.svc.Store(s) }

var (
	nodesDesc         = prometheus.NewDesc("voipbot_dht_nodes", "Nodes in the DHT routing tables, by family and whether they answered lately.", []string{"family", "good"}, nil)
	pingsInFlightDesc = prometheus.NewDesc("voipbot_dht_pings_in_flight", "Pings to newly seen DHT nodes awaiting a reply (bounded).", nil, nil)
	pingsDroppedDesc  = prometheus.NewDesc("voipbot_dht_pings_dropped_total", "Pings to newly seen DHT nodes not sent because too many were in flight (a flood of unknown nodes).", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- nodesDesc
	ch <- pingsInFlightDesc
	ch <- pingsDroppedDesc
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.svc.Load()
	if s == nil {
		return
	}
	st := s.node.Stats()
	for _, n := range []struct {
		family, good string
		count        int
	}{{"ipv4", "true", st.Good4}, {"ipv4", "false", st.Nodes4 - st.Good4}, {"ipv6", "true", st.Good6}, {"ipv6", "false", st.Nodes6 - st.Good6}} {
		ch <- prometheus.MustNewConstMetric(nodesDesc, prometheus.GaugeValue, float64(n.count), n.family, n.good)
	}
	ch <- prometheus.MustNewConstMetric(pingsInFlightDesc, prometheus.GaugeValue, float64(st.PingsInFlight))
	ch <- prometheus.MustNewConstMetric(pingsDroppedDesc, prometheus.CounterValue, float64(st.PingsDropped))
}
