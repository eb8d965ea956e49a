/**
 * A real kube-apiserver for tests: agent/lab/kube-apiserver.ts (etcd + kube-apiserver 1.20 on
 * 127.0.0.1, a REST client for Services and EndpointSlices, object builders), which `xlb demo
 * --kubernetes` uses too. Re-exported here so the tests import it from their support directory.
 */
export * from '../../agent/lab/kube-apiserver.js';
