import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

import { trackResource } from './cleanup.js';

/** Debian's chromium package, which .ci/run installs. Tests never download a browser. */
export const CHROMIUM_PATH = '/usr/bin/chromium';

/**
 * Flags for a headless browser that contacts no host but the ones a test opens: no
 * update, sync, QUIC or background requests.
 */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface TestBrowser {
  readonly context: BrowserContext;
  /** Opens a new tab. */
  newPage(): Promise<Page>;
  /** Closes the browser and deletes its profile directory. Later calls return the same promise. */
  close(): Promise<void>;
}

/** Returns true when Debian's chromium is installed. */
export async function hasChromium(): Promise<boolean> {
  try {
    await access(CHROMIUM_PATH);
    return true;
  } catch {
    return false;
  }
}

/** Starts headless Chromium with a new empty profile and a fixed viewport. */
export async function launchChromium(viewport: { width: number; height: number }): Promise<TestBrowser> {
  const profileDir = await mkdtemp(join(tmpdir(), 'walhook-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport,
      deviceScaleFactor: 1,
    });
  } catch (error) {
    await rm(profileDir, { recursive: true, force: true });
    throw error;
  }

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      untrack();
      await context.close().catch(() => undefined);
      await rm(profileDir, { recursive: true, force: true });
    })();
    return closing;
  };
  const untrack = trackResource({ description: 'headless Chromium', close, closeSync: () => undefined });
  return { context, newPage: () => context.newPage(), close };
}
