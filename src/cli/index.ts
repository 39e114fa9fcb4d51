export { main, COMMANDS, helpText } from './main.js';
