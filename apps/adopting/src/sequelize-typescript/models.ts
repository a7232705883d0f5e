import type { CreateOptions } from 'sequelize';
import { AfterCreate, BeforeCreate, BelongsTo, Column, DataType, ForeignKey, HasMany, Model, Table } from 'sequelize-typescript';

/**
 * The models of a sequelize-typescript app, unchanged by adopting sessionlocal: `@Table`,
 * `@Column`, `@HasMany`/`@BelongsTo` and hooks as decorators. `title` has no explicit type: it
 * comes from `emitDecoratorMetadata` (String -> VARCHAR(255)), which vitest emits from this
 * package's tsconfig.json.
 */
@Table({ tableName: 'authors', timestamps: false })
export class Author extends Model {
  @Column({ type: DataType.TEXT, allowNull: false })
  declare name: string;

  @HasMany(() => Book)
  declare books?: Book[];
}

@Table({ tableName: 'books', timestamps: false })
export class Book extends Model {
  @Column({ allowNull: false })
  declare title: string;

  @ForeignKey(() => Author)
  @Column(DataType.INTEGER)
  declare authorId: number;

  @BelongsTo(() => Author)
  declare author?: Author;

  /** Hook by decorator: runs inside the session's transaction, before the INSERT. */
  @BeforeCreate
  static normalizeTitle(book: Book): void {
    book.title = book.title.trim();
  }

  /** Writes an audit row in the same transaction and queues a notice for after the COMMIT. */
  @AfterCreate
  static async audit(book: Book, options: CreateOptions): Promise<void> {
    await AuditEntry.create({ message: `book ${book.title}` });
    options.transaction?.afterCommit(() => {
      notices.push(`published ${book.title}`);
    });
  }
}

@Table({ tableName: 'audit_entries', timestamps: false })
export class AuditEntry extends Model {
  @Column({ type: DataType.TEXT, allowNull: false })
  declare message: string;
}

/** What `Book`'s after-commit hook published (a stand-in for sending mail). */
export const notices: string[] = [];

export const models = [Author, Book, AuditEntry];
