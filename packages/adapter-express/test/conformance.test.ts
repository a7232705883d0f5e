import { runConformanceSuite } from '@sessionlocal/session-core/conformance';
import { createApp } from './conformance-app.js';

// Express 5 does not run over Node's HTTP/2 compatibility API: its req/res inherit HTTP/1's
// IncomingMessage/ServerResponse, and a request fails inside Express with "TypeError: Cannot read
// properties of undefined (reading 'readable')" before any handler runs (measured, Node 20)
runConformanceSuite({ name: 'express', createApp, http2: "Express 5 over http2.createServer (compat API) fails before the handler: TypeError reading 'readable' of undefined" });
