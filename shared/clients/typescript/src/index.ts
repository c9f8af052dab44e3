// The Pulseboard API's typed client: `paths` is generated from docs/openapi.yaml
// (`make clients`); every request and answer is checked against it by the compiler.
import createClient from "openapi-fetch";
import type { paths, components } from "./schema";

export type { paths, components };
export type Schemas = components["schemas"];

/** Options of a client: where the API is and the API key it sends. */
export interface PulseboardOptions {
  /** The API's origin, e.g. `http://127.0.0.1:3000` or your API Gateway URL. */
  baseUrl: string;
  /** An API key (`pb_live_...`), sent as `kf-api-key`. */
  apiKey?: string;
  /** A bearer token from `POST /auth/login`, instead of a key. */
  token?: string;
  /** A `fetch` of your own (tests, proxies). */
  fetch?: typeof fetch;
}

/** A client whose paths are relative to `/api/v1`: `api.GET("/klips/{id}", ...)`. */
export function pulseboard(options: PulseboardOptions) {
  const headers: Record<string, string> = {};
  if (options.apiKey) headers["kf-api-key"] = options.apiKey;
  if (options.token) headers["authorization"] = `Bearer ${options.token}`;
  return createClient<paths>({
    baseUrl: `${options.baseUrl.replace(/\/+$/, "")}/api/v1`,
    headers,
    fetch: options.fetch,
  });
}

export type Pulseboard = ReturnType<typeof pulseboard>;
