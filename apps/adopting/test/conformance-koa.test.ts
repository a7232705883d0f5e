import 'reflect-metadata';
import { runConformanceSuite } from '@sessionlocal/session-core/conformance';
import { Sequelize } from 'sequelize-typescript';
// the adapter's own conformance app (packages/adapter-koa/test), run here over an engine made with sequelize-typescript's Sequelize
import { createApp } from '../../../packages/adapter-koa/test/conformance-app.js';

runConformanceSuite({ name: 'koa (sequelize-typescript engine)', engineOptions: { sequelizeClass: Sequelize }, createApp });
