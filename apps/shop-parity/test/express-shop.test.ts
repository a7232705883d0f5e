import { shopContractSuite } from './support/shop-suite.js';

shopContractSuite('express-shop');
