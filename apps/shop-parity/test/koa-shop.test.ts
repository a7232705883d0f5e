import { shopContractSuite } from './support/shop-suite.js';

shopContractSuite('koa-shop');
