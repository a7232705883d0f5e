import { runConformanceSuite } from '@sessionlocal/session-core/conformance';
import { createApp } from './conformance-app.js';

runConformanceSuite({ name: 'fastify', createApp, http2: true });
