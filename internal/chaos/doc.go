// Package chaos runs pushring under faults and measures what reached its
// clients: a cluster of pushring nodes on a cluster of NATS servers,
// every one a separate process it can kill -9, SIGTERM, SIGSTOP and
// start again (Cluster, Daemon); a schedule of such faults against roles
// resolved once the cluster runs (Fault, Play); publishers that number
// their QoS 1 messages and send again what was not acknowledged
// (Publisher); members that record what they got (Member); and the
// analysis that counts, per fault, what was lost, repeated or delivered
// out of order (Analyze, Window).
//
// The e2e chaos and rolling-restart tests and pushbench's chaos scenario
// share it. It never calls package testing: a step that fails returns an
// error, for a test to fail on and a benchmark to report.
package chaos
