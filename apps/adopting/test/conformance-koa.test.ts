import 'reflect-metadata';
import { runConformanceSuite } from '@sessionlocal/session-core/conformance';
import { Sequelize } from 'sequelize-typescript';
// the adapter's own conformance app (packages/adapter-koa/test), run here over engines made with
// sequelize-typescript's Sequelize, each with the decorator models (repositoryMode: the run makes several engines)
import { createApp } from '../../../packages/adapter-koa/test/conformance-app.js';
import { models } from '../src/sequelize-typescript/models.js';

runConformanceSuite({ name: 'koa (sequelize-typescript engine)', engineOptions: { sequelizeClass: Sequelize, sequelize: { repositoryMode: true, models } }, createApp });
