import { Body, Controller, Delete, Get, HttpCode, Param, Post, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiProblemResponses } from '../../common/openapi.js';
import { CurrentApp, type AppPrincipal } from '../../common/auth/principals.js';
import { AppKeyGuard } from '../apps/app-key.guard.js';
import { CreateUserDto, UserDto, UserWithFactorsDto } from './dto/user.dto.js';
import { UsersService } from './users.service.js';

@ApiTags('users')
@ApiBearerAuth('appKey')
@UseGuards(AppKeyGuard)
@ApiProblemResponses(400, 401, 404, 409)
@Controller('v1/users')
export class UsersController {
  constructor(private readonly users: UsersService) {}

  @Post()
  @ApiOperation({ summary: 'Register a human of this app' })
  @ApiCreatedResponse({ type: UserDto })
  create(@CurrentApp() app: AppPrincipal, @Body() dto: CreateUserDto): Promise<UserDto> {
    return this.users.create(app.appId, dto);
  }

  @Get(':id')
  @ApiOperation({ summary: 'A user and their active factors' })
  @ApiOkResponse({ type: UserWithFactorsDto })
  get(@CurrentApp() app: AppPrincipal, @Param('id') id: string): Promise<UserWithFactorsDto> {
    return this.users.get(app.appId, id);
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Delete a user: revokes their agents at once' })
  @ApiNoContentResponse()
  delete(@CurrentApp() app: AppPrincipal, @Param('id') id: string): Promise<void> {
    return this.users.delete(app.appId, id);
  }
}
