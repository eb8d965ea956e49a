/** A Node script (the xlb CLI, the agent) run to its end as a child process: exit code and both outputs. */
import { spawn } from 'node:child_process';
import { once } from 'node:events';

export interface NodeRun {
  code: number | null;
  out: string;
  err: string;
}

/** `env` adds to this process's environment; past `timeoutMs` the child gets SIGTERM. */
export async function runNode(script: string, args: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<NodeRun> {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGTERM'), options.timeoutMs);
  try {
    const [code] = (await once(child, 'close')) as [number | null];
    return { code, out, err };
  } finally {
    clearTimeout(timer);
  }
}
