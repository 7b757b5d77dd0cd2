import { ApiPropertyOptional } from '@nestjs/swagger';
import { IsOptional, IsString, MaxLength } from 'class-validator';
import { CreateStepUpDto } from './step-up.dto.js';

/** The body of `POST /v1/step-ups`: an agent's request, or its app's on its behalf (with `agentId`). */
export class CreateStepUpRequestDto extends CreateStepUpDto {
  @ApiPropertyOptional({ description: 'App-initiated step-ups only (app API key): the agent the app asks for. The token goes to the app alone.', example: 'agt_...' })
  @IsOptional() @IsString() @MaxLength(64)
  agentId?: string;
}
