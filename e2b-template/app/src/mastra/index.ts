// The Mastra instance the dev server serves: Studio under MASTRA_STUDIO_BASE_PATH, the API under
// MASTRA_API_PREFIX, on PORT (default 4111). Every API call must carry MASTRA_AUTH_TOKEN, either as
// `Authorization: Bearer <token>` or as `x-mastra-auth-token: <token>`; GET /health stays open.
// Studio's page tells the browser where the API is: the cloud's public origin (CORS_ORIGIN), through
// which the browser reaches this server, rather than the sandbox's own address.
import { Mastra } from '@mastra/core/mastra';
import { SimpleAuth } from '@mastra/core/server';

import { assistant } from './agents/assistant';

const authToken = process.env.MASTRA_AUTH_TOKEN;
const publicOrigin = process.env.CORS_ORIGIN ? new URL(process.env.CORS_ORIGIN) : undefined;
const publicProtocol = publicOrigin?.protocol === 'http:' ? 'http' : 'https';

export const mastra = new Mastra({
  agents: { assistant },
  server: {
    host: process.env.HOST ?? '0.0.0.0',
    port: Number(process.env.PORT ?? 4111),
    studioBase: process.env.MASTRA_STUDIO_BASE_PATH ?? '/studio',
    apiPrefix: process.env.MASTRA_API_PREFIX ?? '/api/mastra',
    ...(publicOrigin
      ? {
          studioHost: publicOrigin.hostname,
          studioProtocol: publicProtocol,
          studioPort: Number(publicOrigin.port || (publicProtocol === 'https' ? 443 : 80)),
        }
      : {}),
    auth: authToken
      ? new SimpleAuth({
          tokens: { [authToken]: { id: process.env.USER_ID ?? 'owner' } },
          headers: ['Authorization', 'x-mastra-auth-token'],
        })
      : undefined,
  },
});
