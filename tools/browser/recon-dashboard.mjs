#!/usr/bin/env node
// Browser test of recon-reporter's dashboard: Playwright (playwright-core) driving Debian's
// chromium. Loads the dashboard, filters by owner, acknowledges then resolves an exception,
// checks the API saw both, and saves a screenshot.
// Usage: recon-dashboard.mjs <base_url> <screenshot.png>
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [base, shot] = process.argv.slice(2);
if (!base || !shot) {
  console.error('usage: recon-dashboard.mjs <base_url> <screenshot.png>');
  process.exit(2);
}
const fail = (msg) => { throw new Error(msg); };
const errors = [];
const profile = mkdtempSync(path.join(tmpdir(), 'recon-chromium-'));
// A fresh profile every run: Playwright passes it to chromium as --user-data-dir.
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1400, height: 1000 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(`${base}/?date=2026-03-14`);
  await page.getByTestId('who').fill('dana');
  await page.locator('#exceptions tbody tr').first().waitFor();
  const all = await page.locator('#exceptions tbody tr').count();

  // filter by owner: only finance's exceptions remain
  await page.getByTestId('filter-owner').selectOption('finance');
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#exceptions tbody tr')];
    return rows.length > 0 && rows.every((r) => r.dataset.owner === 'finance');
  });
  const owners = await page.locator('#exceptions tbody tr').evaluateAll((rs) => rs.map((r) => r.dataset.owner));
  if (owners.length >= all) fail(`owner filter kept ${owners.length} of ${all} rows`);
  console.log(`ok: owner filter shows ${owners.length} finance exceptions of ${all}`);

  // acknowledge the takings variance, then resolve it
  const row = page.locator('#exceptions tbody tr[data-type="takings_variance"]');
  const id = await row.getAttribute('data-id');
  await row.locator('button[data-action="acknowledge"]').click();
  const acked = page.locator(`#exceptions tbody tr[data-id="${id}"]`);
  await acked.and(page.locator('[data-status="acknowledged"]')).waitFor();
  if (!(await acked.textContent()).includes('acknowledged by dana')) fail('acknowledged row does not say who');
  console.log(`ok: exception ${id} acknowledged in the page`);
  await acked.locator('button[data-action="resolve"]').click();
  await page.waitForFunction((i) => !document.querySelector(`#exceptions tbody tr[data-id="${i}"]`), id);
  const api = await (await fetch(`${base}/v1/exceptions/${id}`)).json();
  if (api.exception.status !== 'resolved' || api.exception.resolved_by !== 'dana' ||
      api.exception.acknowledged_by !== 'dana') fail(`API shows ${JSON.stringify(api.exception)}`);
  console.log(`ok: exception ${id} resolved by dana (API agrees)`);

  // resolved filter shows it; its events open from the row
  await page.getByTestId('filter-status').selectOption('resolved');
  const done = page.locator(`#exceptions tbody tr[data-id="${id}"]`);
  await done.waitFor();
  await done.locator('a[data-action="events"]').click();
  await page.getByTestId('detail').locator('li').first().waitFor();
  // the day's reconciliation and flow health are on the page
  await page.getByTestId('recon').locator('h3', { hasText: 'S1 · pos' }).waitFor();
  await page.getByTestId('flows').locator('td', { hasText: 'shop.orders.v1' }).first().waitFor();
  await page.screenshot({ path: shot, fullPage: true });
  if (errors.length) fail(`browser errors: ${errors.join('; ')}`);
  console.log(`ok: screenshot ${shot}`);
} catch (e) {
  console.error(`browser errors so far: ${errors.join('; ') || 'none'}`);
  throw e;
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
