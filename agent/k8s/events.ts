/**
 * Kubernetes Events for what a user must fix in an object: a malformed field or annotation, a service
 * the datapath refused. `kubectl describe service web` then shows why xlb serves it the way it does,
 * beside the agent's log line. Warnings only, one per distinct (object, reason, message) per
 * REPEAT_MS — a problem seen on every sync must not flood the apiserver — and at most
 * MAX_IN_FLIGHT posts at once (more are dropped and counted). A failed post is logged, never retried:
 * events are best effort, as kubelet's are.
 */
import type { ObjectRef } from '../../lb/k8s/index.js';
import type { Logger } from '../log.js';
import type { KubeClient } from './rest.js';

const REPEAT_MS = 10 * 60_000;
const MAX_IN_FLIGHT = 16;
const COMPONENT = 'xlb-agent';

/** What an event may be about: the objects services are made of, and those network policy reads. */
export type EventObject = Omit<ObjectRef, 'kind'> & { kind: ObjectRef['kind'] | 'Pod' | 'NetworkPolicy' };

/** The apiVersion an Event's involvedObject names. */
const API_VERSIONS: Record<EventObject['kind'], string> = {
  Service: 'v1',
  Node: 'v1',
  EndpointSlice: 'discovery.k8s.io/v1',
  Pod: 'v1',
  NetworkPolicy: 'networking.k8s.io/v1',
};

export type EventReason = 'InvalidField' | 'ServiceRefused';

export class EventRecorder {
  private readonly sent = new Map<string, number>();
  private inFlight = 0;
  /** Events not posted because too many were on their way. */
  dropped = 0;
  private lastFailure = 0;

  constructor(
    private readonly client: Pick<KubeClient, 'postJson'>,
    private readonly nodeName: string,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Posts a Warning event on `object` (deduplicated; see the file comment). */
  warn(object: EventObject, reason: EventReason, message: string): void {
    const key = `${object.kind}/${object.namespace ?? ''}/${object.name}\n${reason}\n${message}`;
    const now = this.now();
    const last = this.sent.get(key);
    if (last !== undefined && now - last < REPEAT_MS) return;
    if (this.inFlight >= MAX_IN_FLIGHT) {
      this.dropped += 1;
      return;
    }
    this.sent.set(key, now);
    this.forgetOld(now);
    this.inFlight += 1;
    // Cluster-scoped objects (Nodes) get their events in "default", as kubelet's node events do.
    const namespace = object.namespace ?? 'default';
    const time = new Date(now).toISOString();
    const event = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { generateName: `${object.name}.`, namespace },
      involvedObject: { apiVersion: API_VERSIONS[object.kind], kind: object.kind, name: object.name, ...(object.namespace ? { namespace: object.namespace } : {}) },
      reason,
      message: message.slice(0, 1024),
      type: 'Warning',
      source: { component: COMPONENT, host: this.nodeName },
      reportingComponent: COMPONENT,
      reportingInstance: this.nodeName,
      firstTimestamp: time,
      lastTimestamp: time,
      count: 1,
    };
    this.client
      .postJson(`/api/v1/namespaces/${encodeURIComponent(namespace)}/events`, event)
      .catch((error: unknown) => {
        // One line a minute at most: an apiserver that refuses events (RBAC) must not fill the log.
        if (now - this.lastFailure < 60_000) return;
        this.lastFailure = now;
        this.log.warn(`kubernetes: cannot post an event on ${object.kind} ${namespace}/${object.name}: ${error instanceof Error ? error.message : String(error)}`);
      })
      .finally(() => {
        this.inFlight -= 1;
      });
  }

  private forgetOld(now: number): void {
    if (this.sent.size < 4096) return;
    for (const [key, at] of this.sent) if (now - at >= REPEAT_MS) this.sent.delete(key);
  }
}
