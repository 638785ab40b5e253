// Types of native/prebuilds.js, for the TypeScript that loads the addon (lib/engine/native.ts), its tests and bench.

export interface PrebuildVariant {
  name: string;       // the folder under prebuilds/<platform>/
  flags: string;      // DIXIE_ARCH_FLAGS: the compiler flags that choose the vector units
  needs: string[];    // the /proc/cpuinfo flags a CPU must have to run it
  describe: string;
}

export interface AddonChoice {
  file: string;
  origin: string;     // "DIXIE_ADDON", "source build", or "prebuilt linux-x64/avx2 (...)"
}

export const SOURCE_BUILD: string;   // relative to the package root
export const PREBUILDS_DIR: string;
export const VARIANTS: Record<string, PrebuildVariant[]>;

export function platformKey(platform?: string, arch?: string, glibc?: boolean): string;
export function parseCpuFlags(cpuinfo: string): Set<string>;
export function readCpuFlags(): Set<string>;
export function bestVariant(platform: string, cpuFlags: Set<string>, present: string[]): PrebuildVariant | null;
export function prebuiltFile(root: string, platform: string, variantName: string): string;
export function presentVariants(root: string, platform: string): string[];
export function chooseAddon(inputs: {
  root: string;
  override: string | undefined;
  sourceBuilt: boolean;
  platform: string;
  cpuFlags: Set<string>;
  present: string[];
}): AddonChoice | null;
export function locateAddon(root: string, env?: NodeJS.ProcessEnv): AddonChoice;
export function checkAddon(file: string): string[];  // the vector units it was compiled for
export function compileVariant(root: string, variant: PrebuildVariant, buildDir: string, stdio?: 'inherit' | 'pipe'): Promise<string>;
