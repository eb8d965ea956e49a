/**
 * A CPU profile of part of a process (node:inspector), written as a .cpuprofile that Chrome's
 * DevTools and speedscope open. Started after the datapath is loaded: node --cpu-prof samples with
 * SIGPROF from the start, and a signal during BPF_PROG_LOAD makes the verifier give up (EAGAIN).
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';

export class CpuProfiler {
  private constructor(
    private readonly session: Session,
    private readonly file: string,
  ) {}

  static async start(file: string): Promise<CpuProfiler> {
    const session = new Session();
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
    return new CpuProfiler(session, file);
  }

  async stop(): Promise<void> {
    const { profile } = await this.session.post('Profiler.stop');
    writeFileSync(this.file, JSON.stringify(profile));
    this.session.disconnect();
  }
}
