import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  ServiceValidationError,
  parseHostAddress,
  serviceToJSON,
  trafficPolicyOf,
  validateService,
  validateServiceId,
  type ValidateOptions,
  type ValidationIssue,
} from '../../lb/service.js';

const minimal = {
  frontend: { address: '198.18.0.10', port: 80, protocol: 'TCP' },
  backends: [{ address: '198.18.1.2', port: 8080 }],
};

/** The issues validateService reports for `input` (fails the test if it accepts it). */
function issues(input: unknown, path = '', options: ValidateOptions = {}): ValidationIssue[] {
  try {
    validateService(input, path, options);
  } catch (error) {
    assert.ok(error instanceof ServiceValidationError, String(error));
    return error.issues;
  }
  assert.fail(`accepted ${JSON.stringify(input)}`);
}

function fields(input: unknown): string[] {
  return issues(input).map((i) => i.field);
}

describe('validateService', () => {
  test('fills in every default', () => {
    assert.deepEqual(validateService(minimal), {
      frontend: { address: '198.18.0.10', port: 80, protocol: 'TCP' },
      type: 'LoadBalancer',
      algorithm: 'maglev',
      sessionAffinity: { type: 'None' },
      sourceRanges: [],
      backends: [{ address: '198.18.1.2', port: 8080, weight: 100, state: 'active' }],
    });
  });

  test('mode: the given default when absent, kept when given, absent without a default', () => {
    assert.equal(validateService(minimal, '', { defaultMode: 'dsr' }).mode, 'dsr');
    assert.equal(validateService({ ...minimal, mode: 'hybrid' }, '', { defaultMode: 'dsr' }).mode, 'hybrid');
    assert.equal('mode' in validateService(minimal), false);
  });

  test('externalTrafficPolicy Local and backend nodes: kept in their places; Cluster is the default, left out', () => {
    const local = validateService({ ...minimal, externalTrafficPolicy: 'Local', backends: [{ address: '198.18.1.2', port: 8080, node: 'worker-1' }] });
    assert.deepEqual(Object.keys(local), ['frontend', 'type', 'algorithm', 'sessionAffinity', 'externalTrafficPolicy', 'sourceRanges', 'backends']);
    assert.deepEqual(local.backends, [{ address: '198.18.1.2', port: 8080, weight: 100, state: 'active', node: 'worker-1' }]);
    assert.equal('externalTrafficPolicy' in validateService({ ...minimal, externalTrafficPolicy: 'Cluster' }), false);
    assert.deepEqual(serviceToJSON(local), local);
    assert.deepEqual(fields({ ...minimal, externalTrafficPolicy: 'local' }), ['externalTrafficPolicy']);
    assert.deepEqual(fields({ ...minimal, backends: [{ address: '198.18.1.2', port: 8080, node: 'Worker_1' }] }), ['backends[0].node']);
    assert.deepEqual(fields({ ...minimal, backends: [{ address: '198.18.1.2', port: 8080, node: 7 }] }), ['backends[0].node']);
  });

  test('ClusterIP: a host address like a LoadBalancer; internalTrafficPolicy is its policy, externalTrafficPolicy is not', () => {
    const k8s = { clusterIP: true };
    const cluster = validateService({ ...minimal, type: 'ClusterIP', internalTrafficPolicy: 'Local' }, '', k8s);
    assert.deepEqual(Object.keys(cluster), ['frontend', 'type', 'algorithm', 'sessionAffinity', 'internalTrafficPolicy', 'sourceRanges', 'backends']);
    assert.equal(trafficPolicyOf(cluster), 'Local');
    assert.deepEqual(validateService(JSON.parse(JSON.stringify(cluster)), '', k8s), cluster);
    assert.equal('internalTrafficPolicy' in validateService({ ...minimal, type: 'ClusterIP', internalTrafficPolicy: 'Cluster' }, '', k8s), false);
    assert.equal(trafficPolicyOf(validateService({ ...minimal, type: 'ClusterIP' }, '', k8s)), 'Cluster');
    assert.equal(trafficPolicyOf(validateService({ ...minimal, externalTrafficPolicy: 'Local' })), 'Local');
    const k8sFields = (input: unknown): string[] => issues(input, '', k8s).map((i) => i.field);
    assert.deepEqual(k8sFields({ ...minimal, type: 'ClusterIP', externalTrafficPolicy: 'Local' }), ['externalTrafficPolicy']);
    assert.deepEqual(k8sFields({ ...minimal, type: 'NodePort', frontend: { port: 30080, protocol: 'TCP' }, internalTrafficPolicy: 'Local' }), ['internalTrafficPolicy']);
    assert.deepEqual(k8sFields({ ...minimal, type: 'ClusterIP', internalTrafficPolicy: 'local' }), ['internalTrafficPolicy']);
    assert.deepEqual(k8sFields({ ...minimal, type: 'ClusterIP', frontend: { address: '0.0.0.0', port: 80, protocol: 'TCP' } }), ['frontend.address']);
    // The API and the config file make ClusterIP services too.
    assert.equal(validateService({ ...minimal, type: 'ClusterIP' }).type, 'ClusterIP');
    assert.match(issues({ ...minimal, type: 'Headless' })[0]?.message ?? '', /"Headless" is not one of LoadBalancer, ExternalIP, NodePort, ClusterIP/);
  });

  test('parseHostAddress: the frontend and backend address rules, outside a service', () => {
    assert.deepEqual(parseHostAddress('2001:DB8::0:1'), { text: '2001:db8::1', family: 6 });
    assert.deepEqual(parseHostAddress('198.18.0.1'), { text: '198.18.0.1', family: 4 });
    assert.match(String(parseHostAddress('127.0.0.1')), /loopback/);
    assert.match(String(parseHostAddress('0.0.0.0')), /unspecified/);
    assert.match(String(parseHostAddress('web')), /not an IPv4 or IPv6 address/);
  });

  test('ClientIP affinity defaults to 10800 s; bounds 1..86400', () => {
    assert.deepEqual(validateService({ ...minimal, sessionAffinity: { type: 'ClientIP' } }).sessionAffinity, {
      type: 'ClientIP',
      timeoutSeconds: 10800,
    });
    assert.equal(
      (validateService({ ...minimal, sessionAffinity: { type: 'ClientIP', timeoutSeconds: 86400 } }).sessionAffinity as { timeoutSeconds: number })
        .timeoutSeconds,
      86400,
    );
    assert.deepEqual(fields({ ...minimal, sessionAffinity: { type: 'ClientIP', timeoutSeconds: 0 } }), ['sessionAffinity.timeoutSeconds']);
    assert.deepEqual(fields({ ...minimal, sessionAffinity: { type: 'ClientIP', timeoutSeconds: 86401 } }), ['sessionAffinity.timeoutSeconds']);
    assert.deepEqual(fields({ ...minimal, sessionAffinity: { type: 'None', timeoutSeconds: 5 } }), ['sessionAffinity.timeoutSeconds']);
    assert.deepEqual(fields({ ...minimal, sessionAffinity: { type: 'Cookie' } }), ['sessionAffinity.type']);
  });

  test('normalises address text to canonical form', () => {
    const service = validateService({
      frontend: { address: '2001:DB8:0:0::10', port: 53, protocol: 'UDP' },
      backends: [{ address: '2001:0db8::0:2', port: 53 }],
      sourceRanges: ['2001:DB8:0:0::/64'],
    });
    assert.equal(service.frontend.address, '2001:db8::10');
    assert.equal(service.backends[0]?.address, '2001:db8::2');
    assert.deepEqual(service.sourceRanges, ['2001:db8::/64']);
  });

  test('every problem is reported at once, each naming its field', () => {
    const got = issues({
      frontend: { address: '198.18.0.300', port: 0, protocol: 'tcp' },
      type: 'ExternalName',
      mode: 'DSR',
      algorithm: 'roundrobin',
      backends: [
        { address: '198.18.1.2', port: 8080 },
        { address: '198.18.1.3', port: 65536, weight: 1.5, state: 'draining' },
        { address: 'backend.local', port: '80' },
      ],
      sourceRanges: ['198.18.0.0/33'],
    });
    assert.deepEqual(
      got.map((i) => i.field).sort(),
      [
        'algorithm',
        'backends[1].port',
        'backends[1].state',
        'backends[1].weight',
        'backends[2].address',
        'backends[2].port',
        'frontend.address',
        'frontend.port',
        'frontend.protocol',
        'mode',
        'sourceRanges[0]',
        'type',
      ],
    );
    const byField = new Map(got.map((i) => [i.field, i.message]));
    assert.match(byField.get('frontend.protocol') ?? '', /"tcp" is not one of TCP, UDP, SCTP/);
    assert.match(byField.get('backends[1].port') ?? '', /65536 is not an integer in 1\.\.65535/);
    assert.match(byField.get('backends[2].port') ?? '', /"80" is not an integer/);
  });

  test('the caller’s path prefixes every field (config files)', () => {
    const got = issues({ ...minimal, backends: [{ address: '198.18.1.2', port: 0 }] }, 'services[3]');
    assert.deepEqual(got.map((i) => i.field), ['services[3].backends[0].port']);
    assert.match(String(new ServiceValidationError(got).message), /^services\[3\]\.backends\[0\]\.port: /);
  });

  test('unknown fields are rejected at every level, so typos surface', () => {
    assert.deepEqual(
      fields({
        ...minimal,
        frontend: { ...minimal.frontend, adress: 'x' },
        backends: [{ address: '198.18.1.2', port: 8080, weigth: 5 }],
        sessionAfinity: { type: 'None' },
      }).sort(),
      ['backends[0].weigth', 'frontend.adress', 'sessionAfinity'],
    );
  });

  test('required fields', () => {
    assert.deepEqual(fields({ backends: [] }), ['frontend']);
    assert.deepEqual(fields({ frontend: minimal.frontend }), ['backends']);
    assert.deepEqual(fields({ frontend: { port: 80, protocol: 'TCP' }, backends: [] }), ['frontend.address']);
    assert.deepEqual(fields({ frontend: { address: '198.18.0.10', protocol: 'TCP' }, backends: [] }), ['frontend.port']);
    assert.deepEqual(fields({ frontend: { address: '198.18.0.10', port: 80 }, backends: [] }), ['frontend.protocol']);
    assert.deepEqual(fields('a string'), ['']);
    assert.deepEqual(fields({ ...minimal, backends: [{ port: 80 }] }), ['backends[0].address']);
  });

  test('one address family per service', () => {
    const got = issues({ ...minimal, backends: [{ address: '198.18.1.2', port: 80 }, { address: '2001:db8::2', port: 80 }] });
    assert.deepEqual(got.map((i) => i.field), ['backends[1].address']);
    assert.match(got[0]?.message ?? '', /IPv6 backend for an IPv4 frontend/);
    assert.deepEqual(fields({ ...minimal, sourceRanges: ['2001:db8::/32'] }), ['sourceRanges[0]']);
  });

  test('addresses: no zones, no unspecified, no IPv4-mapped, no low-96-bits-zero IPv6', () => {
    const at = (address: string): string[] => fields({ ...minimal, backends: [{ address, port: 80 }] });
    assert.deepEqual(at('198.18.1.2%eth0'), ['backends[0].address']);
    assert.deepEqual(at('0.0.0.0'), ['backends[0].address']);
    assert.deepEqual(at('01.2.3.4'), ['backends[0].address']);
    const v6 = (address: string): ValidationIssue[] =>
      issues({ frontend: { address: '2001:db8::10', port: 80, protocol: 'TCP' }, backends: [{ address, port: 80 }] });
    assert.match(v6('::ffff:198.18.1.2')[0]?.message ?? '', /IPv4-mapped .* write the IPv4 address 198\.18\.1\.2/);
    assert.match(v6('2001:db8::')[0]?.message ?? '', /low 96 bits zero/);
    assert.match(v6('fe80::1%eth0')[0]?.message ?? '', /not an IPv4 or IPv6 address/);
  });

  test('reserved addresses are neither frontends nor backends, in any spelling; each issue says which range', () => {
    const cases: [string, RegExp][] = [
      ['127.0.0.1', /is a loopback address \(127\.0\.0\.0\/8\)/],
      ['127.255.0.9', /loopback/],
      ['::1', /is the loopback address \(::1\)/],
      ['0:0:0:0:0:0:0:1', /^::1 is the loopback address/],
      ['169.254.10.1', /is a link-local address \(169\.254\.0\.0\/16\)/],
      ['fe80::1', /is a link-local address \(fe80::\/10\)/],
      ['FEBF::1', /^febf::1 is a link-local address/],
      ['224.0.0.1', /is a multicast address \(224\.0\.0\.0\/4\)/],
      ['239.255.255.250', /multicast/],
      ['ff02::1', /is a multicast address \(ff00::\/8\)/],
      ['255.255.255.255', /is the broadcast address/],
      ['0.0.0.0', /is the unspecified address \(0\.0\.0\.0\)/],
      ['::', /is the unspecified address \(::\)/],
      ['::ffff:127.0.0.1', /^::ffff:127\.0\.0\.1 is a loopback address \(IPv4-mapped 127\.0\.0\.1\)/],
      ['::ffff:7f00:1', /^::ffff:127\.0\.0\.1 is a loopback address/],
      ['::ffff:169.254.0.1', /link-local address \(IPv4-mapped 169\.254\.0\.1\)/],
      ['::ffff:224.0.0.1', /multicast address \(IPv4-mapped/],
      ['::ffff:0.0.0.0', /unspecified address \(IPv4-mapped 0\.0\.0\.0\)/],
    ];
    for (const [address, why] of cases) {
      const v6 = address.includes(':');
      const frontend = { address: v6 ? '2001:db8::10' : '198.18.0.10', port: 80, protocol: 'TCP' };
      const asBackend = issues({ frontend, backends: [{ address: '198.18.1.2', port: 80 }, { address, port: 80 }].slice(v6 ? 1 : 0) });
      assert.deepEqual(asBackend.map((i) => i.field), [v6 ? 'backends[0].address' : 'backends[1].address'], address);
      assert.match(asBackend[0]?.message ?? '', why, address);
      const asFrontend = issues({ frontend: { ...frontend, address }, backends: [] });
      assert.deepEqual(asFrontend.map((i) => i.field), ['frontend.address'], address);
      assert.match(asFrontend[0]?.message ?? '', why, address);
    }
    // Next to each range, addresses that are hosts' stay valid.
    for (const address of ['126.255.255.255', '128.0.0.1', '169.253.0.1', '223.255.255.254', '240.0.0.1', 'fec0::1', 'fe7f::1', 'fd00::1', '2001:db8::1']) {
      const v6 = address.includes(':');
      const frontend = { address: v6 ? '2001:db8::10' : '198.18.0.10', port: 80, protocol: 'TCP' };
      assert.equal(validateService({ frontend, backends: [{ address, port: 80 }] }).backends[0]?.address, address);
      assert.equal(validateService({ frontend: { ...frontend, address }, backends: [] }).frontend.address, address);
    }
    // A config file gets the same rule, under its own path.
    assert.deepEqual(
      issues({ ...minimal, backends: [{ address: '198.18.1.2', port: 80 }, { address: '10.0.0.1', port: 80 }, { address: '127.0.0.1', port: 80 }] }, 'services[4]').map((i) => i.field),
      ['services[4].backends[2].address'],
    );
  });

  test('a backend at its frontend\'s own address is refused; another port there does not help', () => {
    for (const port of [80, 8080]) {
      const got = issues({ ...minimal, backends: [{ address: '198.18.1.2', port: 8080 }, { address: '198.18.0.10', port }] });
      assert.deepEqual(got, [{ field: 'backends[1].address', message: '198.18.0.10 is the frontend\'s own address: a backend there would loop' }]);
    }
    const v6 = issues({ frontend: { address: '2001:db8::10', port: 80, protocol: 'TCP' }, backends: [{ address: '2001:DB8:0::10', port: 80 }] });
    assert.deepEqual(v6.map((i) => i.field), ['backends[0].address']);
  });

  test('NodePort keeps 0.0.0.0 and :: as "every node address"; its backends follow the rules', () => {
    const base = { type: 'NodePort', frontend: { port: 30080, protocol: 'TCP' } };
    assert.equal(validateService({ ...base, frontend: { ...base.frontend, address: '0.0.0.0' }, backends: [{ address: '198.18.1.2', port: 80 }] }).frontend.address, '0.0.0.0');
    assert.equal(validateService({ ...base, frontend: { ...base.frontend, address: '::' }, backends: [{ address: '2001:db8::2', port: 80 }] }).frontend.address, '::');
    const got = issues({ ...base, backends: [{ address: '127.0.0.1', port: 80 }] });
    assert.deepEqual(got.map((i) => i.field), ['backends[0].address']);
    assert.match(got[0]?.message ?? '', /loopback/);
    assert.deepEqual(fields({ ...base, frontend: { ...base.frontend, address: '::ffff:0.0.0.0' }, backends: [] }), ['frontend.address']);
  });

  test('weights 0..65535, ports 1..65535', () => {
    assert.equal(validateService({ ...minimal, backends: [{ address: '198.18.1.2', port: 65535, weight: 0 }] }).backends[0]?.weight, 0);
    assert.deepEqual(fields({ ...minimal, backends: [{ address: '198.18.1.2', port: 80, weight: 65536 }] }), ['backends[0].weight']);
    assert.deepEqual(fields({ ...minimal, backends: [{ address: '198.18.1.2', port: 80, weight: -1 }] }), ['backends[0].weight']);
  });

  test('duplicate backends (same address and port, any spelling) are rejected', () => {
    const got = issues({
      frontend: { address: '2001:db8::10', port: 80, protocol: 'TCP' },
      backends: [
        { address: '2001:db8::2', port: 80 },
        { address: '2001:db8::3', port: 80 },
        { address: '2001:DB8:0::2', port: 80, weight: 5 },
      ],
    });
    assert.deepEqual(got, [{ field: 'backends[2]', message: 'duplicate of backends[0] ([2001:db8::2]:80)' }]);
    // Same address, other port: a different backend.
    assert.equal(validateService({ ...minimal, backends: [{ address: '198.18.1.2', port: 80 }, { address: '198.18.1.2', port: 81 }] }).backends.length, 2);
  });

  test('source ranges: valid CIDRs with host bits zero, no duplicates', () => {
    assert.deepEqual(validateService({ ...minimal, sourceRanges: ['198.18.0.0/24', '0.0.0.0/0', '198.18.5.7/32'] }).sourceRanges, [
      '198.18.0.0/24',
      '0.0.0.0/0',
      '198.18.5.7/32',
    ]);
    const got = issues({ ...minimal, sourceRanges: ['198.18.0.1/24', '198.18.0.0', 'x/8', '198.18.0.0/24', '198.18.0.0/24', 5] });
    assert.deepEqual(got.map((i) => i.field), ['sourceRanges[0]', 'sourceRanges[1]', 'sourceRanges[2]', 'sourceRanges[4]', 'sourceRanges[5]']);
    assert.match(got[0]?.message ?? '', /host bits set: the network is 198\.18\.0\.0\/24/);
    assert.match(got[3]?.message ?? '', /duplicate of sourceRanges\[3\]/);
    const v6 = issues({ frontend: { address: '2001:db8::10', port: 80, protocol: 'TCP' }, backends: [], sourceRanges: ['2001:db8::1/64'] });
    assert.match(v6[0]?.message ?? '', /network is 2001:db8::\/64/);
  });

  test('NodePort: frontend.address is the family selector, defaulting to the backends’ family', () => {
    const base = { type: 'NodePort', frontend: { port: 30080, protocol: 'TCP' } };
    assert.equal(validateService({ ...base, backends: [{ address: '198.18.1.2', port: 80 }] }).frontend.address, '0.0.0.0');
    assert.equal(validateService({ ...base, backends: [{ address: '2001:db8::2', port: 80 }] }).frontend.address, '::');
    assert.equal(validateService({ ...base, backends: [] }).frontend.address, '0.0.0.0');
    assert.equal(
      validateService({ ...base, frontend: { ...base.frontend, address: '::' }, backends: [] }).frontend.address,
      '::',
    );
    const got = issues({ ...base, frontend: { ...base.frontend, address: '198.18.0.10' }, backends: [] });
    assert.deepEqual(got.map((i) => i.field), ['frontend.address']);
    assert.match(got[0]?.message ?? '', /every node address/);
    // The unspecified address is only a NodePort's.
    assert.deepEqual(fields({ ...minimal, frontend: { ...minimal.frontend, address: '0.0.0.0' } }), ['frontend.address']);
    // A family mismatch between "::" and the backends is still an error.
    assert.deepEqual(
      fields({ ...base, frontend: { ...base.frontend, address: '::' }, backends: [{ address: '198.18.1.2', port: 80 }] }),
      ['backends[0].address'],
    );
  });

  test('normalised output validates to itself (idempotent) and has the documented member order', () => {
    const full = validateService(
      {
        backends: [{ state: 'terminating', port: 8080, address: '198.18.1.2', weight: 7 }],
        sourceRanges: ['198.18.0.0/24'],
        sessionAffinity: { timeoutSeconds: 60, type: 'ClientIP' },
        algorithm: 'random',
        mode: 'snat',
        type: 'ExternalIP',
        frontend: { protocol: 'SCTP', port: 9, address: '198.18.0.10' },
      },
      '',
    );
    assert.deepEqual(validateService(JSON.parse(JSON.stringify(full))), full);
    assert.deepEqual(Object.keys(full), ['frontend', 'type', 'mode', 'algorithm', 'sessionAffinity', 'sourceRanges', 'backends']);
    assert.deepEqual(Object.keys(full.backends[0] ?? {}), ['address', 'port', 'weight', 'state']);
    assert.deepEqual(serviceToJSON(full), full);
    assert.notEqual(serviceToJSON(full).backends, full.backends);
  });
});

describe('validateServiceId', () => {
  test('accepts DNS labels', () => {
    for (const id of ['a', 'web', 'web-1', '0', 'a'.repeat(63)]) assert.equal(validateServiceId(id), id);
  });

  test('rejects anything else, naming the field "id"', () => {
    for (const id of ['', '-web', 'web-', 'Web', 'web_1', 'web.1', 'a'.repeat(64), 5, undefined]) {
      assert.throws(
        () => validateServiceId(id),
        (e: unknown) => e instanceof ServiceValidationError && e.issues[0]?.field === 'id' && /DNS label/.test(e.message),
        String(id),
      );
    }
  });
});
