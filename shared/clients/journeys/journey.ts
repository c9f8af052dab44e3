// The main journey through the typed TypeScript client only (no raw HTTP), as journey.py
// does in Python: `tsc --strict` checks every request and answer against the generated
// types, and the run checks them against a live API.
//
//   PULSEBOARD_URL=http://127.0.0.1:3000 PULSEBOARD_KEY=pb_live_... node journey.js
import { pulseboard } from "../typescript/src/index";

const base = process.env.PULSEBOARD_URL ?? "http://127.0.0.1:3000";
const key = process.env.PULSEBOARD_KEY ?? "";

function must<T>(step: string, r: { data?: T; error?: unknown; response: Response }): T {
  if (r.data === undefined) {
    throw new Error(`${step}: ${r.response.status} ${JSON.stringify(r.error)}`);
  }
  return r.data;
}

async function main(): Promise<void> {
  const api = pulseboard({ baseUrl: base, apiKey: key });
  const profile = must("profile", await api.GET("/profile"));
  console.log("signed in as", profile.data.email);
  const created = must(
    "key",
    await api.POST("/api-keys", { body: { name: "journey key", expires_in_days: 30 } }),
  );
  const ds = must(
    "datasource",
    await api.POST("/datasources", { body: { name: "TS sales", format: "json" } }),
  );
  // The Klip counts New York days (the company's zone): yesterday in UTC is within the last
  // 7 of them at any hour, while today in UTC is tomorrow there in the evening.
  const today = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
  must(
    "push",
    await api.PUT("/datasources/{id}/data", {
      params: { path: { id: ds.data.id } },
      body: [
        { date: today, region: "EMEA", amount: 120 },
        { date: today, region: "APAC", amount: 80 },
      ],
    }),
  );
  const klip = must(
    "klip",
    await api.POST("/klips", {
      body: {
        name: "TS sales this week",
        type: "number",
        datasource_id: ds.data.id,
        query: { value: "amount", aggregate: "sum", time_column: "date", range: "last_7_days" },
        display: { format: "currency", target: 500 },
      },
    }),
  );
  const dash = must("dashboard", await api.POST("/dashboards", { body: { name: "TS sales" } }));
  must(
    "add klip",
    await api.PUT("/dashboards/{id}/klip-instances", {
      params: { path: { id: dash.data.id } },
      body: { klips: [{ klip_id: klip.data.id, region: "main", position: 0 }] },
    }),
  );
  const shown = must(
    "read dashboard",
    await api.GET("/dashboards/{id}", { params: { path: { id: dash.data.id } } }),
  );
  const value = shown.data.klip_instances[0]?.value?.current;
  console.log("dashboard value", value);
  if (value !== 200) throw new Error(`expected 200, got ${value}`);
  const report = must(
    "report",
    await api.POST("/reports", {
      body: { name: "TS growth", klip_ids: [klip.data.id], format: "html" },
    }),
  );
  const queued = must(
    "generate",
    await api.POST("/reports/{id}/generate", { params: { path: { id: report.data.id } } }),
  );
  let status = queued.data.status;
  for (let i = 0; i < 120 && status !== "succeeded" && status !== "failed"; i++) {
    await new Promise((r) => setTimeout(r, 500));
    const run = must(
      "run",
      await api.GET("/reports/{id}/runs/{run_id}", {
        params: { path: { id: report.data.id, run_id: queued.data.id } },
      }),
    );
    status = run.data.status;
  }
  if (status !== "succeeded") throw new Error(`run ${status}`);
  const file = await api.GET("/reports/{id}/download", {
    params: { path: { id: report.data.id } },
    parseAs: "text",
  });
  if (!file.response.ok || !file.data) throw new Error(`download ${file.response.status}`);
  console.log("report bytes", file.data.length);
  let seen = 0;
  let offset = 0;
  for (;;) {
    const page = must("list", await api.GET("/klips", { params: { query: { limit: 1, offset } } }));
    seen += page.data.klips.length;
    if (!page.meta.next) break;
    offset += 1;
  }
  if (seen < 1) throw new Error("the list paged through no Klip");
  console.log("klips paged", seen, "new key", created.data.id);
  console.log("journey ok");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
