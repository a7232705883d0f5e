console.log('shops arrive with the sample apps');
