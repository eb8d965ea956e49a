/**
 * Socket-level load balancing (bpf/sock/sock_lb.c): cgroup v2 programs that give a connect() or
 * sendmsg() to a service address a backend before any packet exists, for every process under
 * --cgroup-root (pods and host processes alike). They read the very maps xdp_lb reads — services,
 * slots, Maglev tables, affinity — through their pins, so the services the agent writes reach both
 * datapaths at once; only the reverse map (xlb_sock_revnat) is theirs.
 *
 * Wiring in agent/main.ts (after createNodeDatapath, which creates the LB maps; same bpffs, same
 * capacity and Maglev parameters, or the pinned maps would be replaced and their services lost —
 * load() refuses rather than do that):
 *
 *   const { resolveCgroupRoot } = await import('../lb/datapath/cgroup.js');
 *   const { SocketLb } = await import('./socket-lb.js');
 *   const cgroupRoot = resolveCgroupRoot(flags.cgroupRoot, { mount: flags.nodeSetup, log: (l) => log.info(l), warn: (l) => log.warn(l) });
 *   if (cgroupRoot !== undefined) {
 *     const socketLb = SocketLb.load({ pinDir: flags.bpffs, capacity: flags.capacity, maglevTableSize: flags.maglevTableSize,
 *       maglevSeed: flags.maglevSeed, cgroupRoot, log: (l) => log.info(l) });
 *     teardown.add('closing socket-level load balancing', async () => socketLb.close());
 *   }
 *
 * --cgroup-root DIR (flags.ts): a cgroup v2 directory; default (undefined) the unified hierarchy's
 * root, found in /proc/self/mountinfo, or mounted at /run/xlb/cgroupv2 when the node has none and
 * node setup is allowed. close() leaves the programs attached (their links stay pinned beside the
 * maps, under <bpffs>/links/), as the XDP and tc programs stay: the next agent swaps its programs in
 * atomically. xlb-agent --cleanup calls, before it removes the pins:
 *
 *   const cgroupRoot = resolveCgroupRoot(flags.cgroupRoot, { mount: false });  // undefined: only the pinned links
 *   for (const line of SocketLb.detachAll({ pinDir: flags.bpffs, cgroupRoot })) log.info(`detached ${line}`);
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { programNameById } from '../lb/datapath/cleanup.js';
import { prepareBpffs } from '../lb/datapath/bpffs.js';
import {
  attachCgroupLink,
  cgroupHookOf,
  CgroupHook,
  detachCgroupLink,
  detachCgroupProgram,
  pinnedCgroupLink,
  queryCgroup,
  type CgroupHookName,
  type LinkOutcome,
} from '../lb/datapath/cgroup.js';
import { lbMapSizes } from '../lb/datapath/lb-datapath.js';
import { BpfMap } from '../lb/datapath/map.js';
import { BpfObject } from '../lb/datapath/object.js';
import { bpfObjectPath } from '../lb/datapath/objects.js';
import { assertMaglevTableSize, type MaglevSeed } from '../lb/maglev/index.js';

export const SOCKET_LB_OBJECT = 'sock/sock_lb.o';
/** The programs of sock_lb.o, by name (what the kernel reports; each ≤ 15 characters). */
export const SOCKET_LB_PROGRAMS = [
  'xlb_connect4',
  'xlb_connect6',
  'xlb_sendmsg4',
  'xlb_sendmsg6',
  'xlb_recvmsg4',
  'xlb_recvmsg6',
  'xlb_peername4',
  'xlb_peername6',
  'xlb_release',
] as const;
/** The reverse map: socket and backend → the service address the socket asked for. */
export const SOCKET_REVNAT_MAP = 'xlb_sock_revnat';

export interface SocketLbOptions {
  /** Where the LB maps are pinned (--bpffs): the same directory as the LB datapath's. */
  pinDir: string;
  /** The LB maps' capacity, as the LB datapath was loaded with (--bpf-lb-*-map-max). */
  capacity: { services: number; backends: number };
  maglevTableSize: number;
  maglevSeed: MaglevSeed;
  /** The cgroup v2 directory whose processes get socket-LB (resolveCgroupRoot). */
  cgroupRoot: string;
  log: (line: string) => void;
}

export interface SocketLbProgramStatus {
  name: string;
  hook: CgroupHookName;
  /** The kernel's ids of the link and the program on the hook; 0 when the link is gone. */
  linkId: number;
  programId: number;
}

/** Where the link of a program is pinned: beside the maps, so a restarted agent finds it. */
export function socketLbLinkPin(pinDir: string, program: string): string {
  return join(pinDir, 'links', program);
}

export class SocketLb {
  private closed = false;

  private constructor(
    readonly object: BpfObject,
    readonly options: SocketLbOptions,
  ) {}

  /**
   * Load sock_lb.o onto the pinned LB maps and attach its programs to options.cgroupRoot (a previous
   * agent's programs are replaced atomically). Throws, having attached nothing new, when the pinned
   * LB maps are of another capacity than options.capacity.
   */
  static load(options: SocketLbOptions): SocketLb {
    assertMaglevTableSize(options.maglevTableSize);
    prepareBpffs(options.pinDir, { mount: false });
    const maxEntries = lbMapSizes(options.capacity);
    assertPinnedSizes(options.pinDir, maxEntries);
    const object = BpfObject.load(bpfObjectPath(SOCKET_LB_OBJECT), {
      pinDir: options.pinDir,
      constants: {
        xlb_maglev_size: options.maglevTableSize,
        xlb_maglev_hash_seed0: options.maglevSeed.jhash0,
        xlb_maglev_hash_seed1: options.maglevSeed.jhash1,
      },
      innerValueSize: { xlb_lb_maglev: 2 * options.maglevTableSize },
      maxEntries,
    });
    try {
      for (const replaced of object.replacedPins) {
        options.log(`pinned map replaced, its state lost (the layout changed since it was pinned): ${replaced}`);
      }
      const socketLb = new SocketLb(object, options);
      socketLb.attach();
      return socketLb;
    } catch (error) {
      object.close();
      throw error;
    }
  }

  private attach(): void {
    const { cgroupRoot, pinDir, log } = this.options;
    const outcomes = new Map<LinkOutcome, string[]>();
    for (const name of SOCKET_LB_PROGRAMS) {
      const outcome = attachCgroupLink(cgroupRoot, this.object.program(name), socketLbLinkPin(pinDir, name));
      outcomes.set(outcome, [...(outcomes.get(outcome) ?? []), name]);
    }
    const said = [...outcomes].map(([outcome, names]) => `${outcome} ${names.join(', ')}`).join('; ');
    log(`socket-level load balancing on cgroup ${cgroupRoot}: ${said}`);
  }

  /** Each program, its hook and what the kernel says is attached by its pinned link. */
  status(): SocketLbProgramStatus[] {
    return SOCKET_LB_PROGRAMS.map((name) => {
      const link = pinnedCgroupLink(socketLbLinkPin(this.options.pinDir, name));
      return { name, hook: cgroupHookOf(this.object.program(name)), linkId: link?.linkId ?? 0, programId: link?.programId ?? 0 };
    });
  }

  /** Close our handles; the programs stay attached through their pinned links (see the file comment). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.object.close();
  }

  /** Take the programs off the cgroup (their links detached and unpinned); one line per program. */
  detach(): string[] {
    return SocketLb.detachAll({ pinDir: this.options.pinDir, cgroupRoot: this.options.cgroupRoot });
  }

  /**
   * Everything socket-LB attached, off (xlb-agent --cleanup, which loads nothing): the links pinned
   * under pinDir, then any xlb program still on cgroupRoot's hooks (a link someone else holds, or an
   * attachment of another kind). One line per program removed.
   */
  static detachAll(options: { pinDir: string; cgroupRoot?: string }): string[] {
    const removed: string[] = [];
    const linkDir = join(options.pinDir, 'links');
    const pinned = existsSync(linkDir) ? readdirSync(linkDir) : [];
    for (const name of SOCKET_LB_PROGRAMS) {
      if (!pinned.includes(name)) continue;
      if (detachCgroupLink(socketLbLinkPin(options.pinDir, name))) removed.push(`socket-LB ${name} (its pinned link)`);
    }
    const { cgroupRoot } = options;
    if (cgroupRoot === undefined) return removed;
    const ours = new Set<string>(SOCKET_LB_PROGRAMS);
    for (const hook of Object.keys(CgroupHook) as CgroupHookName[]) {
      for (const id of queryCgroup(cgroupRoot, hook)) {
        const name = programNameById(id);
        if (ours.has(name) && detachCgroupProgram(cgroupRoot, hook, id)) removed.push(`socket-LB ${name} from cgroup ${cgroupRoot} (${hook})`);
      }
    }
    return removed;
  }
}

/** The pinned LB maps must be the size this load asks for: else loading would replace them, services and all. */
function assertPinnedSizes(pinDir: string, maxEntries: Record<string, number>): void {
  for (const [name, wanted] of Object.entries(maxEntries)) {
    const path = join(pinDir, name);
    if (!existsSync(path)) continue;
    const pinned = BpfMap.pinnedInfo(path).maxEntries;
    if (pinned !== wanted) {
      throw new Error(
        `socket-LB: pinned map ${path} holds ${pinned} entries, the capacity given asks for ${wanted}; ` +
          'load socket-LB with the capacity the LB datapath was loaded with (loading would replace the map, and its services with it)',
      );
    }
  }
}
