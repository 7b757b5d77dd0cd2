export { guardTool, type Extra, type GuardOptions, type ToolGuard } from './guard-tool.js';
