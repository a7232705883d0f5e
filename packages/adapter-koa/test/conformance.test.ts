import { runConformanceSuite } from '@sessionlocal/session-core/conformance';
import { createApp } from './conformance-app.js';

runConformanceSuite({ name: 'koa', createApp, http2: true });
