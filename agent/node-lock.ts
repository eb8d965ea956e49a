/**
 * One agent per node, decided before anything is loaded, attached or written: the agent holds
 * - an abstract unix socket "xlb-agent" in its network namespace (the node, as the datapath sees it):
 *   a second agent on the node, whatever its flags, cannot bind it and learns the first one's pid;
 * - a flock on "<api socket>.lock": two agents in different namespaces cannot share an API socket;
 * - a flock on its --bpffs directory: nor can they share pinned maps.
 * The kernel drops all three when the process dies, however it dies: nothing stale blocks a restart.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { dirname } from 'node:path';
import { FileLock } from '../lb/datapath/file-lock.js';

const NODE_LOCK_NAME = '\0xlb-agent';
const PID_QUERY_TIMEOUT_MS = 1000;

/** Another agent holds the node, the socket or the pins; the message names which and how to proceed. */
export class AgentRunningError extends Error {
  override name = 'AgentRunningError';
}

/** The pid the node's agent answers on its abstract socket, if it answers in time. */
function runningAgentPid(): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = createConnection(NODE_LOCK_NAME);
    let text = '';
    const done = (pid: string | undefined): void => {
      socket.destroy();
      resolve(pid);
    };
    socket.setTimeout(PID_QUERY_TIMEOUT_MS, () => done(undefined));
    socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
    socket.on('end', () => done(/^\d+$/.test(text.trim()) ? text.trim() : undefined));
    socket.on('error', () => done(undefined));
  });
}

function listenNodeLock(): Promise<Server | undefined> {
  return new Promise((resolve, reject) => {
    const server = createServer((peer) => peer.end(`${process.pid}\n`));
    server.once('error', (error: NodeJS.ErrnoException) => (error.code === 'EADDRINUSE' ? resolve(undefined) : reject(error)));
    server.listen(NODE_LOCK_NAME, () => resolve(server));
  });
}

export class AgentLock {
  private constructor(
    private readonly node: Server,
    private readonly socketLock: FileLock,
    private bpffsLock: FileLock | undefined,
  ) {}

  /**
   * Takes the node and the API socket; the bpffs directory follows with lockBpffs() once it exists
   * (preparing it may mount a bpffs, which is done only by the agent that holds the node).
   */
  static async acquire(apiSocket: string): Promise<AgentLock> {
    const node = await listenNodeLock();
    if (!node) {
      const pid = await runningAgentPid();
      throw new AgentRunningError(
        `another xlb-agent${pid ? ` (pid ${pid})` : ''} is running on this node (network namespace): one agent per node; stop it first`,
      );
    }
    try {
      mkdirSync(dirname(apiSocket), { recursive: true, mode: 0o755 });
      const socketLock = FileLock.tryAcquire(`${apiSocket}.lock`);
      if (!socketLock) throw new AgentRunningError(`--api-socket ${apiSocket} belongs to another running xlb-agent (${apiSocket}.lock is held)`);
      return new AgentLock(node, socketLock, undefined);
    } catch (error) {
      node.close();
      throw error;
    }
  }

  lockBpffs(bpffs: string): void {
    const lock = FileLock.tryAcquire(bpffs, { directory: true });
    if (!lock) throw new AgentRunningError(`--bpffs ${bpffs} holds the pinned maps of another running xlb-agent`);
    this.bpffsLock = lock;
  }

  /** Drops the locks; the socket's lock file goes too (the socket itself is the API server's). */
  async release(): Promise<void> {
    this.bpffsLock?.release();
    this.bpffsLock = undefined;
    rmSync(this.socketLock.path, { force: true });
    this.socketLock.release();
    await new Promise<void>((resolve) => this.node.close(() => resolve()));
  }
}
