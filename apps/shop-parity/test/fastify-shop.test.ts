import { shopContractSuite } from './support/shop-suite.js';

shopContractSuite('fastify-shop');
