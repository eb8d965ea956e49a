/**
 * Fragmented SNAT replies (a large DNS answer): every fragment goes back to the client from the service
 * address, not only the first, which alone carries the ports. Byte level, under BPF_PROG_TEST_RUN.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { IPPROTO, buildFrame, checksumErrors, type FrameSpec, type L4Spec } from '../support/packet.js';
import { BACKENDS, CLIENT, LbHarness, NODE, XDP } from '../support/lb-harness.js';

const VIP4 = '198.18.10.50';
const VIP6 = '2001:db8:10::50';
const SERVICES = {
  dns4: { frontend: { address: VIP4, port: 53, protocol: 'UDP' }, mode: 'snat', backends: BACKENDS.map((b) => ({ address: b.v4, port: 5353 })) },
  dns6: { frontend: { address: VIP6, port: 53, protocol: 'UDP' }, mode: 'snat', backends: BACKENDS.map((b) => ({ address: b.v6, port: 5353 })) },
};

function frame(src: string, dst: string, l4: L4Spec, extra: Partial<FrameSpec['ip']> = {}): Buffer {
  return buildFrame({ eth: { src: '02:00:00:00:00:0b', dst: '02:00:00:00:00:02' }, ip: { src, dst, ...extra }, l4 });
}

describe('SNAT replies in fragments', () => {
  let h: LbHarness;
  before(() => {
    h = LbHarness.create('snatfrag');
    h.install(SERVICES);
  });
  after(() => h.destroy());

  for (const [family, vip, node, client] of [['IPv4', VIP4, NODE.v4, CLIENT.v4], ['IPv6', VIP6, NODE.v6, CLIENT.v6]] as const) {
    test(`${family}: the first and the later fragments of a reply all reach the client from the VIP`, () => {
      const query = h.run(frame(client, vip, { proto: 'udp', sport: 45000, dport: 53, payload: Buffer.from('query') }));
      assert.equal(query.retval, XDP.TX);
      const backend = query.parsed.ip.dst;
      const natPort = query.parsed.ip.l4?.sport ?? 0;
      assert.equal(query.parsed.ip.src, node);

      const id = 4711;
      const ext = (offset: number, more: boolean): Partial<FrameSpec['ip']> =>
        family === 'IPv4' ? { id, moreFragments: more, fragmentOffset: offset } : { ext: [{ type: 'fragment', id, offset, more }] };
      const first = h.run(frame(backend, node, { proto: 'udp', sport: 5353, dport: natPort, payload: Buffer.alloc(64, 1) }, ext(0, true)));
      assert.equal(first.retval, XDP.TX);
      assert.equal(first.parsed.ip.src, vip);
      assert.equal(first.parsed.ip.dst, client);
      assert.equal(first.parsed.ip.l4?.dport, 45000);

      const later = h.run(frame(backend, node, { proto: 'raw', protocol: IPPROTO.UDP, payload: Buffer.alloc(32, 2) }, ext(72, false)));
      assert.equal(later.retval, XDP.TX, 'the later fragment is translated too, not left to the LB\'s stack');
      assert.equal(later.parsed.ip.src, vip);
      assert.equal(later.parsed.ip.dst, client);
      assert.deepEqual(checksumErrors(later.out), []);
    });
  }
});
