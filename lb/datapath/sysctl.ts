/**
 * Reading and writing /proc/sys. Synchronous on purpose: /proc/sys/net shows the network namespace of
 * the calling thread, so a caller inside inNetns() sets that namespace's values.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { sysctlName, unmetSysctls, type SysctlSetting } from '../node-settings.js';

function procPath(path: readonly string[]): string {
  return `/proc/sys/${path.join('/')}`;
}

/** The value, trimmed; undefined when the node has no such setting. */
export function readSysctl(path: string[]): string | undefined {
  try {
    return readFileSync(procPath(path), 'utf8').trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`reading sysctl ${sysctlName(path)}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

export function writeSysctl(path: string[], value: string): void {
  try {
    writeFileSync(procPath(path), `${value}\n`);
  } catch (error) {
    throw new Error(`setting sysctl ${sysctlName(path)}=${value}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** A setting as the agent reports it: what it was, what it is, and whether the agent changed it. */
export interface NodeSettingReport {
  sysctl: string;
  value: string;
  wanted: string;
  changedFrom?: string;
  effect: string;
}

/**
 * Sets every unmet setting (`apply`) or only reports it; logs each change, or warns about each unmet
 * setting, naming the sysctl and its effect. Returns the settings that were unmet at start.
 */
export function enforceSysctls(
  settings: readonly SysctlSetting[],
  apply: boolean,
  log: { info: (line: string) => void; warn: (line: string) => void },
): NodeSettingReport[] {
  return unmetSysctls(settings).map((setting) => {
    const name = sysctlName(setting.path);
    const report: NodeSettingReport = { sysctl: name, value: setting.current ?? '', wanted: setting.wanted, effect: setting.effect };
    if (!apply) {
      log.warn(`sysctl ${name} is ${setting.current ?? ''}, the datapath needs ${setting.wanted}: ${setting.effect}`);
      return report;
    }
    try {
      writeSysctl(setting.path, setting.wanted);
    } catch (error) {
      // A read-only /proc/sys (some containers): the agent runs, and says what will not work.
      log.warn(`${error instanceof Error ? error.message : String(error)}; it stays ${setting.current ?? ''}: ${setting.effect}`);
      return report;
    }
    log.info(`set sysctl ${name}: ${setting.current ?? ''} -> ${setting.wanted} (otherwise ${setting.effect})`);
    return { ...report, value: setting.wanted, changedFrom: setting.current ?? '' };
  });
}
