/// <reference lib="dom" />
// The demo page in headless Chromium (Debian's chromium driven by playwright-core) against a real
// server on the embedded tiny model: two subjects uploaded, a box drawn, Run, the progress bar
// advancing, two images with their heat maps; Cancel; a mismatched prompt's error in the status
// line, in both subject-marker dialects. It also takes the README's screenshot (written to
// docs/images/demo.png with UPDATE_SCREENSHOT=1).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { type BrowserContext, chromium, type Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { FastComposer } from '../../lib/index.js';
import { type FastComposerServer, startServer } from '../../lib/server/index.js';

const root = join(import.meta.dirname, '..', '..');
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

describe('demo page in headless Chromium', () => {
  let fc: FastComposer;
  let server: FastComposerServer;
  let context: BrowserContext;
  let page: Page;
  let work: string;

  beforeAll(async () => {
    fc = await FastComposer.load(undefined, { device: 'cpu' });
    const pageDefaults = { width: 64, height: 64, steps: 12, numImages: 2 };
    server = await startServer({ backend: fc, info: { model: 'tiny', device: fc.device, dtype: fc.dtype }, port: 0, pageDefaults });
    work = mkdtempSync(join(tmpdir(), 'fastcomposer-browser-'));
    context = await chromium.launchPersistentContext(join(work, 'profile'), {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1200, height: 1000 },
    });
    page = await context.newPage();
    await page.goto(server.url!);
  });
  afterAll(async () => {
    await context?.close();
    await server?.close();
    await fc?.dispose();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('uploads two subjects, draws a box, runs with a moving progress bar and shows two images with their heat maps', async () => {
    await expect.poll(() => page.locator('#model-line').textContent()).toBe('model tiny on cpu (float32)');
    // The server's page defaults, and the seed demo's values for the rest.
    const fields = ['width', 'height', 'steps', 'numImages', 'alpha', 'guidanceScale', 'seed'];
    expect(await Promise.all(fields.map((f) => page.locator(`#${f}`).inputValue()))).toEqual(['64', '64', '12', '2', '0.75', '5', '-1']);
    expect(await page.locator('#numImages-value').textContent()).toBe('2');
    expect(await page.locator('#frame-size').textContent()).toBe('64 × 64');
    await page.locator('#advanced summary').click();
    await page.locator('#seed').fill('7');
    const files = page.locator('#subjects input[type=file]');
    await expect.poll(() => files.count()).toBe(2);
    await files.nth(0).setInputFiles(join(root, 'examples', 'subject-a.png'));
    await files.nth(1).setInputFiles(join(root, 'examples', 'subject-b.png'));
    await expect
      .poll(() => page.locator('#subjects .preview').evaluateAll((imgs) => imgs.map((i) => (i as HTMLImageElement).naturalWidth > 0)))
      .toEqual([true, true]);

    // Subject 1's box over the left part of the frame: from 10%, 10% to 50%, 90%.
    await page.locator('#subjects .draw').first().click();
    const frame = (await page.locator('#frame').boundingBox())!;
    await page.mouse.move(frame.x + frame.width * 0.1, frame.y + frame.height * 0.1);
    await page.mouse.down();
    await page.mouse.move(frame.x + frame.width * 0.3, frame.y + frame.height * 0.5, { steps: 4 });
    await page.mouse.move(frame.x + frame.width * 0.5, frame.y + frame.height * 0.9, { steps: 4 });
    await page.mouse.up();
    await expect.poll(() => page.locator('#frame .region').count()).toBe(1);

    // Every value the progress bar takes, and the region fields the page sends.
    await page.evaluate(() => {
      const bar = document.getElementById('progress') as HTMLProgressElement;
      const w = window as unknown as { progressValues: number[]; regionFields: unknown[] };
      w.progressValues = [];
      new MutationObserver(() => w.progressValues.push(bar.value)).observe(bar, { attributes: true, attributeFilter: ['value'] });
      const fetch = window.fetch.bind(window);
      window.fetch = (input, init) => {
        if (init?.body instanceof FormData) w.regionFields = init.body.getAll('region');
        return fetch(input, init);
      };
    });
    await page.locator('#run').click();
    await expect.poll(() => page.evaluate(() => (window as unknown as { regionFields?: string[] }).regionFields)).toHaveLength(2);
    const regions = await page.evaluate(() => (window as unknown as { regionFields: string[] }).regionFields);
    expect(regions[1]).toBe('');
    const region = JSON.parse(regions[0]!) as { x: number; y: number; width: number; height: number };
    for (const [got, want] of [
      [region.x, 6.4],
      [region.y, 6.4],
      [region.width, 25.6],
      [region.height, 51.2],
    ] as const)
      expect(Math.abs(got - want)).toBeLessThanOrEqual(1);

    await expect.poll(() => page.locator('#status').textContent(), { timeout: 240_000, interval: 200 }).toBe('Done: 2 images, seed 7.'); // no warning: the prefilled negative prompt fits in 77 tokens
    const values = await page.evaluate(() => (window as unknown as { progressValues: number[] }).progressValues);
    const moving = values.filter((v) => v > 0);
    expect(new Set(moving).size).toBeGreaterThanOrEqual(5);
    for (let i = 1; i < moving.length; i++) expect(moving[i]).toBeGreaterThanOrEqual(moving[i - 1]!);
    expect(await page.locator('#progress').evaluate((p: HTMLProgressElement) => p.value === p.max && p.max === 13)).toBe(true); // PNDM: 12 + 1 steps

    const rows = page.locator('#gallery .result');
    await expect.poll(() => rows.count()).toBe(2);
    for (let n = 0; n < 2; n++) {
      const sizes = await rows
        .nth(n)
        .locator('img')
        .evaluateAll((imgs) =>
          Promise.all(
            imgs.map(
              async (i) => (
                await (i as HTMLImageElement).decode(),
                [(i as HTMLImageElement).className, (i as HTMLImageElement).naturalWidth]
              ),
            ),
          ),
        );
      expect(sizes).toEqual([
        ['image', 64],
        ['heatmap', 64],
        ['heatmap', 64],
      ]);
    }

    const shot = join(work, 'demo.png');
    await page.screenshot({ path: shot, fullPage: true });
    expect(readFileSync(shot).readUInt32BE(0)).toBe(0x89504e47);
    // A palette PNG: a third of the size, and it ships with the package's docs.
    if (process.env.UPDATE_SCREENSHOT === '1')
      await sharp(shot)
        .png({ palette: true, effort: 10 })
        .toFile(join(root, 'docs', 'images', 'demo.png'));
  }, 300_000);

  it('Cancel stops a running job', async () => {
    await page.locator('#steps').fill('300'); // the most the page allows, as the seed's demo
    await page.locator('#run').click();
    await expect.poll(() => page.locator('#status').textContent()).toMatch(/^Running/);
    await expect
      .poll(() => page.locator('#progress').evaluate((p: HTMLProgressElement) => p.value), { timeout: 120_000, interval: 100 })
      .toBeGreaterThan(0);
    await page.locator('#cancel').click();
    await expect.poll(() => page.locator('#status').textContent(), { timeout: 60_000 }).toBe('Cancelled.');
    expect(await page.locator('#run').isDisabled()).toBe(false);
    expect(await page.locator('#cancel').isDisabled()).toBe(true);
    expect(await page.locator('#progress').evaluate((p: HTMLProgressElement) => p.value < p.max)).toBe(true);
  }, 300_000);

  it("shows the library's error for a prompt that does not match the subjects in the status line", async () => {
    await page.locator('#prompt').fill('a man <|image|> in a park');
    await page.locator('#run').click();
    const status = page.locator('#status');
    await expect.poll(() => status.getAttribute('class')).toBe('error');
    expect(await status.textContent()).toBe(
      'Expected 1 subject (one per <|image|> in the prompt) for subjects but received array of length 2 [ERR_SUBJECT_COUNT]',
    );
    expect(await page.locator('#run').isDisabled()).toBe(false);

    // MMagic's marker: the prompt's markers, the hint and the insert button follow it, and the server counts it.
    await page.locator('#imageToken').selectOption('img');
    expect(await page.locator('#prompt').inputValue()).toBe('a man img in a park');
    expect(await page.locator('.marker').allTextContents()).toEqual(['img', 'img']);
    await page.locator('#status').evaluate((el) => (el.textContent = ''));
    await page.locator('#run').click();
    await expect
      .poll(() => status.textContent())
      .toBe('Expected 1 subject (one per img in the prompt) for subjects but received array of length 2 [ERR_SUBJECT_COUNT]');
    await page.locator('#imageToken').selectOption('<|image|>');
    expect(await page.locator('#prompt').inputValue()).toBe('a man <|image|> in a park');
  });
});
