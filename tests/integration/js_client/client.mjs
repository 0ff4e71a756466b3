// A real JavaScript FHIR client (npm fhir-kit-client) against a running Dossier.
// Input (JSON on stdin): {base, admin, gp, patient}. Output (stdout): one JSON report
// of what the client saw; the Python test asserts on it. Any client error is reported
// with its HTTP status, never swallowed.
import { Client } from 'fhir-kit-client';

const input = JSON.parse(await new Promise((resolve) => {
  let data = '';
  process.stdin.on('data', (chunk) => { data += chunk; });
  process.stdin.on('end', () => resolve(data));
}));
const headers = { Accept: 'application/fhir+json' };
const admin = new Client({ baseUrl: input.base, bearerToken: input.admin, customHeaders: headers });
const gp = new Client({ baseUrl: input.base, bearerToken: input.gp, customHeaders: headers });
const report = {};

async function step(name, work) {
  try {
    report[name] = await work();
  } catch (error) {
    const status = error.response ? error.response.status : undefined;
    report[name] = { error: String(error.message || error), status };
  }
}

// CRUD on the directory (the admin keeps it)
await step('crud', async () => {
  const created = await admin.create({
    resourceType: 'Organization',
    body: { resourceType: 'Organization', active: true, name: 'Service social de Molenbeek' },
  });
  const read = await admin.read({ resourceType: 'Organization', id: created.id });
  const updated = await admin.update({
    resourceType: 'Organization', id: created.id, body: { ...read, active: false },
  });
  const patched = await admin.patch({
    resourceType: 'Organization', id: created.id,
    jsonPatch: [{ op: 'replace', path: '/active', value: true }],
  });
  await admin.delete({ resourceType: 'Organization', id: created.id });
  let gone;
  try {
    await admin.read({ resourceType: 'Organization', id: created.id });
  } catch (error) {
    gone = error.response.status;
  }
  return {
    id: created.id, readName: read.name, updatedVersion: updated.meta.versionId,
    patchedActive: patched.active, patchedVersion: patched.meta.versionId, gone,
  };
});

// paging to the end with nextPage (a count=0 page must not loop)
await step('paging', async () => {
  let bundle = await gp.search({ resourceType: 'Task', searchParams: { patient: `Patient/${input.patient}`, _count: 2 } });
  const ids = [];
  let pages = 0;
  while (bundle) {
    pages += 1;
    for (const entry of bundle.entry || []) ids.push(entry.resource.id);
    if (pages > 50) throw new Error('paging does not end');
    bundle = await gp.nextPage({ bundle });
  }
  const countOnly = await gp.search({ resourceType: 'Task', searchParams: { patient: `Patient/${input.patient}`, _count: 0 } });
  const next = await gp.nextPage({ bundle: countOnly });
  return { total: ids.length, distinct: new Set(ids).size, pages, countOnlyTotal: countOnly.total, countOnlyNext: next === undefined || next === null ? null : 'a next page' };
});

await step('compartment', async () => {
  const bundle = await gp.compartmentSearch({
    resourceType: 'Task', compartment: { resourceType: 'Patient', id: input.patient },
    searchParams: { status: 'in-progress' },
  });
  return { total: bundle.total, types: [...new Set((bundle.entry || []).map((e) => e.resource.resourceType))] };
});

await step('batch', async () => {
  const response = await gp.batch({
    body: {
      resourceType: 'Bundle', type: 'batch', entry: [
        { request: { method: 'GET', url: `Patient/${input.patient}` } },
        { request: { method: 'GET', url: 'Patient/does-not-exist' } },
        { request: { method: 'GET', url: `Task?patient=Patient/${input.patient}&_count=1` } },
      ],
    },
  });
  return { type: response.type, statuses: response.entry.map((e) => e.response.status) };
});

await step('transaction', async () => {
  const response = await gp.transaction({
    body: {
      resourceType: 'Bundle', type: 'transaction', entry: [
        {
          fullUrl: 'urn:uuid:6a4c8a2e-1f0b-4d7e-9a51-3c1f6d2b9e01',
          request: { method: 'POST', url: 'Task' },
          resource: {
            resourceType: 'Task', status: 'requested', intent: 'order',
            code: { coding: [{ system: 'https://dossier.brussels/fhir/CodeSystem/demarche-type', code: 'debt-mediation' }] },
            for: { reference: `Patient/${input.patient}` },
            authoredOn: '2027-03-01',
          },
        },
        {
          request: { method: 'POST', url: 'Task' },
          resource: {
            resourceType: 'Task', status: 'requested', intent: 'order',
            code: { coding: [{ system: 'https://dossier.brussels/fhir/CodeSystem/demarche-type', code: 'medical-card' }] },
            for: { reference: `Patient/${input.patient}` },
            partOf: [{ reference: 'urn:uuid:6a4c8a2e-1f0b-4d7e-9a51-3c1f6d2b9e01' }],
            authoredOn: '2027-03-01',
          },
        },
      ],
    },
  });
  return { type: response.type, statuses: response.entry.map((e) => e.response.status) };
});

process.stdout.write(JSON.stringify(report));
