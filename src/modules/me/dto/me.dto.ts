import { ApiProperty } from '@nestjs/swagger';

export class MeDto {
  @ApiProperty({ type: 'object', properties: { id: { type: 'string' }, displayName: { type: 'string' } } }) user: { id: string; displayName: string };
  @ApiProperty({ type: 'object', properties: { name: { type: 'string' } } }) app: { name: string };
}
