// Type-check the published declaration files themselves (skipLibCheck off), reporting only
// diagnostics in @sessionlocal/* files: third-party typings are not ours to judge.
import { readFileSync } from 'node:fs';
import ts from 'typescript';

const config = ts.getParsedCommandLineOfConfigFile('tsconfig.json', {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => console.error(d.messageText) });
const program = ts.createProgram({ rootNames: config.fileNames, options: { ...config.options, skipLibCheck: false } });
const ours = program.getSourceFiles().filter((file) => /node_modules\/@sessionlocal\/[^/]+\/dist\/.*\.d\.ts$/.test(file.fileName));
const diagnostics = ours.flatMap((file) => [...program.getSyntacticDiagnostics(file), ...program.getSemanticDiagnostics(file)]);
const host = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => process.cwd(), getNewLine: () => '\n' };
if (diagnostics.length > 0) {
  console.error(ts.formatDiagnostics(diagnostics, host));
  process.exit(1);
}
const { entries } = JSON.parse(readFileSync('entries.json', 'utf8'));
console.log(`  ${ours.length} declaration files of ${entries.length} entry points check clean`);
