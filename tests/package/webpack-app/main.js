// Built by webpack 5 in tests/package: the installed package, imported by its name.
import * as filesync from 'filesync-wasm';

window.filesync = filesync;
document.body.dataset.ready = 'true';
